import { z } from 'zod';
import { parseContract } from '../../contracts/formatIssues.ts';
import { toStorable } from '../../contracts/storableText.ts';
import { NormalizedInbound, type InboundBatch } from '../inboundTypes.ts';

// Loose objects throughout: Telegram adds fields with every Bot API release.
const TelegramUser = z.looseObject({
  id: z.int(),
  is_bot: z.boolean(),
  first_name: z.string(),
  last_name: z.string().optional(),
  username: z.string().optional(),
});

const TelegramChat = z.looseObject({
  id: z.int(),
  type: z.enum(['private', 'group', 'supergroup', 'channel']),
  title: z.string().optional(),
  username: z.string().optional(),
});

const TelegramMessage = z.looseObject({
  message_id: z.int(),
  date: z.int(),
  chat: TelegramChat,
  from: TelegramUser.optional(),
  sender_chat: TelegramChat.optional(),
  text: z.string().optional(),
  caption: z.string().optional(),
  message_thread_id: z.int().optional(),
  is_topic_message: z.boolean().optional(),
  reply_to_message: z.looseObject({ message_id: z.int() }).optional(),
});
type TelegramMessage = z.infer<typeof TelegramMessage>;

/** A press of an inline keyboard button: `data` is the button's `callback_data`. */
const TelegramCallbackQuery = z.looseObject({
  id: z.string().min(1),
  from: TelegramUser,
  data: z.string().optional(),
});

/** The parts of a Bot API `Update` the pipeline reads; every other update kind is ignored. */
export const TelegramUpdate = z.looseObject({
  update_id: z.int(),
  message: TelegramMessage.optional(),
  edited_message: TelegramMessage.optional(),
  channel_post: TelegramMessage.optional(),
  callback_query: TelegramCallbackQuery.optional(),
});
export type TelegramUpdate = z.infer<typeof TelegramUpdate>;

/**
 * Reads a Telegram webhook body. A text message (or a media message with a caption) in a
 * private chat, group, supergroup topic or channel becomes one event keyed by `update_id`;
 * any other valid update (sticker, join, button press, ...) is counted as ignored. An edit
 * (`edited_message`) is read like a message only with `edits: 'read'`; ingress ignores edits,
 * since each has an `update_id` of its own and would start another run for text already
 * answered. Throws {@link ContractViolationError} naming the bad field when the body is not an
 * Update. Each NUL and unpaired surrogate in a string it reads is U+FFFD in the event.
 */
export function normalizeTelegramUpdate(
  body: unknown,
  {
    edits = 'read',
  }: {
    /** Whether an `edited_message` becomes an event or is ignored. @defaultValue 'read' */
    edits?: 'read' | 'ignore';
  } = {},
): InboundBatch {
  const update = parseContract(TelegramUpdate, body);
  const message =
    update.message ?? (edits === 'read' ? update.edited_message : undefined) ?? update.channel_post;
  const text = message?.text ?? message?.caption;
  if (message === undefined || text === undefined) return { events: [], ignored: 1 };

  const chat = message.chat;
  const topic = message.is_topic_message === true ? message.message_thread_id : undefined;
  const replyTo = message.reply_to_message?.message_id;
  const read = {
    externalEventId: String(update.update_id),
    sender: senderOf(message),
    conversation:
      chat.type === 'private'
        ? { kind: 'dm', id: String(chat.id) }
        : {
            kind: 'group',
            id: String(chat.id),
            ...(topic === undefined ? {} : { threadId: String(topic) }),
          },
    message: {
      text,
      // In a forum topic every message "replies" to the topic's opening service message.
      ...(replyTo === undefined || replyTo === topic ? {} : { replyToExternalId: String(replyTo) }),
    },
  };
  // Telegram redelivers what it got a 5xx for: a NUL or an unpaired surrogate Postgres would
  // refuse (or one the 200-unit name cut made) is stored as U+FFFD, not a 500 on every retry.
  const event = parseContract(NormalizedInbound, toStorable(read));
  return { events: [event], ignored: 0 };
}

function senderOf(message: TelegramMessage): NormalizedInbound['sender'] {
  const from = message.from;
  // With sender_chat set (channel posts, anonymous group admins) `from` is a placeholder bot.
  if (message.sender_chat !== undefined || from === undefined) {
    const chat = message.sender_chat ?? message.chat;
    return withName({ id: String(chat.id), isBot: false }, chat.title ?? chat.username);
  }
  const fullName = [from.first_name, from.last_name].filter(Boolean).join(' ');
  return withName({ id: String(from.id), isBot: from.is_bot }, fullName || from.username);
}

function withName(
  sender: { id: string; isBot: boolean },
  name: string | undefined,
): NormalizedInbound['sender'] {
  return name === undefined ? sender : { ...sender, displayName: name.slice(0, 200) };
}
