import { createHmac, randomBytes } from 'node:crypto';

/** What {@link telegramUpdate} builds a message update from. */
export type TelegramUpdateSpec = {
  updateId: number;
  chatId: number;
  /** Default: `private` for a positive chat id, `supergroup` for a negative one. */
  chatType?: 'private' | 'group' | 'supergroup' | 'channel';
  text: string;
  /** The sender's user id (default: the chat id in a private chat, else 111222333). */
  fromId?: number;
  /** A forum topic: sets `message_thread_id` and `is_topic_message`, as Telegram does. */
  threadId?: number;
  /** Sends `text` as a photo caption instead of as message text. */
  asCaption?: boolean;
  /** `message_id` of a message this one replies to. */
  replyToMessageId?: number;
  /** Default 1000 + updateId. */
  messageId?: number;
};

/**
 * A full Bot API `Update` carrying a `message`, shaped like the ones Telegram posts to a
 * webhook: sender, chat (with `title` and `is_forum` for groups), `date`, `entities` for a
 * leading bot command, and for a forum topic the `reply_to_message` pointing at the topic's
 * `forum_topic_created` service message that Telegram adds to every message in a topic.
 */
export function telegramUpdate(spec: TelegramUpdateSpec): Record<string, unknown> {
  const chatType = spec.chatType ?? (spec.chatId > 0 ? 'private' : 'supergroup');
  const fromId = spec.fromId ?? (chatType === 'private' ? spec.chatId : 111_222_333);
  const date = Math.floor(Date.now() / 1000);
  const from = {
    id: fromId,
    is_bot: false,
    first_name: 'Ada',
    last_name: 'Lovelace',
    username: 'ada_l',
    language_code: 'en',
  };
  const chat =
    chatType === 'private'
      ? {
          id: spec.chatId,
          first_name: 'Ada',
          last_name: 'Lovelace',
          username: 'ada_l',
          type: 'private',
        }
      : {
          id: spec.chatId,
          title: 'Ops Room',
          type: chatType,
          ...(spec.threadId === undefined ? {} : { is_forum: true }),
        };
  const command = /^\/\w+/.exec(spec.text)?.[0];
  const entities = command
    ? [{ offset: 0, length: command.length, type: 'bot_command' }]
    : undefined;
  const topicRoot =
    spec.threadId === undefined
      ? undefined
      : {
          message_id: spec.threadId,
          from,
          chat,
          date: date - 3600,
          message_thread_id: spec.threadId,
          forum_topic_created: { name: 'Incidents', icon_color: 7322096 },
          is_topic_message: true,
        };
  const replyTo =
    spec.replyToMessageId === undefined
      ? topicRoot
      : { message_id: spec.replyToMessageId, from, chat, date: date - 60, text: 'earlier message' };
  return {
    update_id: spec.updateId,
    message: {
      message_id: spec.messageId ?? 1000 + spec.updateId,
      from,
      chat,
      date,
      ...(spec.threadId === undefined
        ? {}
        : { message_thread_id: spec.threadId, is_topic_message: true }),
      ...(replyTo === undefined ? {} : { reply_to_message: replyTo }),
      ...(spec.asCaption
        ? {
            photo: [
              {
                file_id: 'AgACAgQAAxkBAAIB',
                file_unique_id: 'AQADc7',
                file_size: 1234,
                width: 90,
                height: 60,
              },
            ],
            caption: spec.text,
          }
        : { text: spec.text, ...(entities ? { entities } : {}) }),
    },
  };
}

/**
 * A Bot API `Update` carrying a `callback_query`: a press of an inline keyboard button under a
 * message the bot sent to `chatId` (default: the presser's private chat), shaped as Telegram
 * posts it (`id`, `from`, `message`, `chat_instance`, `data`).
 */
export function telegramCallbackQuery(spec: {
  updateId: number;
  fromId: number;
  data: string;
  chatId?: number;
  /** Default: a fresh numeric string, as Telegram's are. */
  callbackQueryId?: string;
}): Record<string, unknown> {
  const chatId = spec.chatId ?? spec.fromId;
  const from = { id: spec.fromId, is_bot: false, first_name: 'Ops', username: 'ops_person' };
  return {
    update_id: spec.updateId,
    callback_query: {
      id: spec.callbackQueryId ?? String(4_000_000_000_000_000 + Math.floor(Math.random() * 1e9)),
      from,
      message: {
        message_id: 900 + spec.updateId,
        from: { id: 7_000_000_001, is_bot: true, first_name: 'Fake Bot', username: 'fake_bot' },
        chat: { id: chatId, first_name: 'Ops', username: 'ops_person', type: 'private' },
        date: Math.floor(Date.now() / 1000) - 30,
        text: 'Approval needed',
        reply_markup: {
          inline_keyboard: [[{ text: 'Approve', callback_data: spec.data }]],
        },
      },
      chat_instance: '-5123456789012345678',
      data: spec.data,
    },
  };
}

/** A text message event for {@link lineWebhook}. */
export type LineTextEventSpec = {
  text: string;
  /** Default: a fresh ULID-like id. */
  webhookEventId?: string;
  /** Default: a fresh `U…` id. */
  userId?: string;
  /** Sets the source to this group. */
  groupId?: string;
  /** Sets the source to this multi-person chat. */
  roomId?: string;
  /** Default: a fresh 32-hex token. */
  replyToken?: string;
  /** The id of the message this one quotes. */
  quotedMessageId?: string;
};

/** An event passed through untouched (a sticker, a follow, a postback, ...). */
export type LineRawEventSpec = { raw: Record<string, unknown> };

/** The body and signature of a webhook call, as LINE sends them. */
export type SignedLineWebhook = {
  /** The raw JSON body. */
  body: string;
  /** `x-line-signature`: base64 HMAC-SHA256 of `body` keyed with the channel secret. */
  signature: string;
  /** The same body, parsed. */
  payload: { destination: string; events: Record<string, unknown>[] };
};

/**
 * A LINE webhook call: `{ destination, events }` with each text event shaped as LINE sends
 * it (`replyToken`, `source`, `timestamp`, `mode`, `webhookEventId`, `deliveryContext`,
 * `message` with `id` and `quoteToken`), serialized and signed with `channelSecret`.
 */
export function lineWebhook(spec: {
  events: readonly (LineTextEventSpec | LineRawEventSpec)[];
  channelSecret: string;
  destination?: string;
}): SignedLineWebhook {
  const payload = {
    destination: spec.destination ?? `U${hex(16)}`,
    events: spec.events.map((event) => ('raw' in event ? event.raw : lineTextEvent(event))),
  };
  const body = JSON.stringify(payload);
  return { body, signature: lineSignature(body, spec.channelSecret), payload };
}

/** One text message event as LINE sends it. */
export function lineTextEvent(spec: LineTextEventSpec): Record<string, unknown> {
  const userId = spec.userId ?? `U${hex(16)}`;
  const source =
    spec.groupId !== undefined
      ? { type: 'group', groupId: spec.groupId, userId }
      : spec.roomId !== undefined
        ? { type: 'room', roomId: spec.roomId, userId }
        : { type: 'user', userId };
  return {
    type: 'message',
    message: {
      type: 'text',
      id: String(500_000_000_000_000 + Math.floor(Math.random() * 1e9)),
      quoteToken: hex(24),
      text: spec.text,
      ...(spec.quotedMessageId === undefined ? {} : { quotedMessageId: spec.quotedMessageId }),
    },
    webhookEventId: spec.webhookEventId ?? ulid(),
    deliveryContext: { isRedelivery: false },
    timestamp: Date.now(),
    source,
    replyToken: spec.replyToken ?? hex(16),
    mode: 'active',
  };
}

/** A sticker message event as LINE sends it (a run whose one attachment is the sticker). */
export function lineStickerEvent(userId = `U${hex(16)}`): Record<string, unknown> {
  return {
    type: 'message',
    message: {
      type: 'sticker',
      id: String(500_000_000_000_000 + Math.floor(Math.random() * 1e9)),
      quoteToken: hex(24),
      stickerId: '52002734',
      packageId: '11537',
      stickerResourceType: 'STATIC',
      keywords: ['cony', 'hello'],
    },
    webhookEventId: ulid(),
    deliveryContext: { isRedelivery: false },
    timestamp: Date.now(),
    source: { type: 'user', userId },
    replyToken: hex(16),
    mode: 'active',
  };
}

/** `x-line-signature` for a raw body, computed as LINE does. */
export function lineSignature(body: string | Buffer, channelSecret: string): string {
  return createHmac('sha256', channelSecret).update(body).digest('base64');
}

function hex(bytes: number): string {
  return randomBytes(bytes).toString('hex');
}

/** A 26-character Crockford base32 id, the form of LINE's `webhookEventId`. */
function ulid(): string {
  const alphabet = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
  return Array.from(randomBytes(26), (b) => alphabet[b % 32]).join('');
}
