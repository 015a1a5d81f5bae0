import { z } from 'zod';
import { parseContract } from '../../contracts/formatIssues.ts';
import { toStorable } from '../../contracts/storableText.ts';
import type { Attachment } from '../../contracts/conversationEvent.ts';
import { capAttachments, type MediaCaps } from '../capAttachments.ts';
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

/** What every Bot API file object carries; `file_size` is optional in the Bot API. */
const TelegramFile = z.looseObject({
  file_id: z.string().min(1),
  file_size: z.int().min(0).optional(),
  file_name: z.string().optional(),
  mime_type: z.string().optional(),
});
type TelegramFile = z.infer<typeof TelegramFile>;

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
  /** One PhotoSize per size Telegram made of the photo. */
  photo: z.array(TelegramFile).optional(),
  document: TelegramFile.optional(),
  video: TelegramFile.optional(),
  video_note: TelegramFile.optional(),
  audio: TelegramFile.optional(),
  voice: TelegramFile.optional(),
  animation: TelegramFile.optional(),
  sticker: TelegramFile.extend({ emoji: z.string().optional() }).optional(),
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
 * Reads a Telegram webhook body. A message in a private chat, group, supergroup topic or
 * channel with text, or with media (a photo, document, video, video note, audio, voice note,
 * animation or sticker; its caption, if any, is the text), becomes one event keyed by
 * `update_id`, the media as {@link Attachment} references (`file_id`, with the type and size
 * Telegram reports; nothing is fetched) under the account's `media` caps. A sticker alone is a
 * message too: its emoji is its name. Any other valid update (a location, a poll, a member
 * join, a button press, ...) is counted as ignored. An edit
 * (`edited_message`) is read like a message only with `edits: 'read'`; ingress ignores edits,
 * since each has an `update_id` of its own and would start another run for text already
 * answered. Throws {@link ContractViolationError} naming the bad field when the body is not an
 * Update. Each NUL and unpaired surrogate in a string it reads is U+FFFD in the event.
 */
export function normalizeTelegramUpdate(
  body: unknown,
  {
    edits = 'read',
    media,
  }: {
    /** Whether an `edited_message` becomes an event or is ignored. @defaultValue 'read' */
    edits?: 'read' | 'ignore';
    /** The account's caps on attachments. @defaultValue the contract's defaults */
    media?: MediaCaps;
  } = {},
): InboundBatch {
  const update = parseContract(TelegramUpdate, body);
  const message =
    update.message ?? (edits === 'read' ? update.edited_message : undefined) ?? update.channel_post;
  if (message === undefined) return { events: [], ignored: 1 };
  const attachments = capAttachments(attachmentsOf(message), media);
  const text = message.text ?? message.caption ?? (attachments.length > 0 ? '' : undefined);
  if (text === undefined) return { events: [], ignored: 1 };

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
      attachments,
    },
  };
  // Telegram redelivers what it got a 5xx for: a NUL or an unpaired surrogate Postgres would
  // refuse (or one the 200-unit name cut made) is stored as U+FFFD, not a 500 on every retry.
  const event = parseContract(NormalizedInbound, toStorable(read));
  return { events: [event], ignored: 0 };
}

/**
 * The message's media as references. A photo is its largest size (the last PhotoSize, as
 * Telegram orders them). An animation also comes with a `document` copy for older clients:
 * it is listed once.
 */
function attachmentsOf(message: TelegramMessage): Attachment[] {
  const found: Attachment[] = [];
  const largest = message.photo?.at(-1);
  if (largest) found.push(reference('image', largest));
  if (message.animation) found.push(reference('video', message.animation));
  else if (message.document) found.push(reference('file', message.document));
  if (message.video) found.push(reference('video', message.video));
  if (message.video_note) found.push(reference('video', message.video_note));
  if (message.audio) found.push(reference('audio', message.audio));
  if (message.voice) found.push(reference('audio', message.voice));
  if (message.sticker) {
    const { emoji, ...file } = message.sticker;
    found.push(reference('sticker', { ...file, ...(emoji ? { file_name: emoji } : {}) }));
  }
  return found;
}

function reference(kind: Attachment['kind'], file: TelegramFile): Attachment {
  return {
    kind,
    ref: file.file_id,
    ...(file.mime_type ? { mimeType: file.mime_type.slice(0, 200) } : {}),
    ...(file.file_size === undefined ? {} : { sizeBytes: file.file_size }),
    ...(file.file_name ? { name: file.file_name.slice(0, 300) } : {}),
  };
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
