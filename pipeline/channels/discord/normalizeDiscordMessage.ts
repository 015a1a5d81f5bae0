import { z } from 'zod';
import type { ChannelContract } from '../../contracts/channelContract.ts';
import type { Attachment } from '../../contracts/conversationEvent.ts';
import { parseContract } from '../../contracts/formatIssues.ts';
import { toStorable } from '../../contracts/storableText.ts';
import { capAttachments } from '../capAttachments.ts';
import { NormalizedInbound } from '../inboundTypes.ts';

// Loose objects throughout: Discord adds fields to its payloads without notice.
const User = z.looseObject({
  id: z.string().min(1).max(30),
  username: z.string().optional(),
  global_name: z.string().nullable().optional(),
  bot: z.boolean().optional(),
  system: z.boolean().optional(),
});

/** The parts of a `MESSAGE_CREATE` dispatch's `d` (a Discord message object) read here. */
export const DiscordMessage = z.looseObject({
  id: z.string().min(1).max(30),
  channel_id: z.string().min(1).max(30),
  guild_id: z.string().min(1).max(30).optional(),
  author: User,
  content: z.string().default(''),
  /** 0 DEFAULT, 19 REPLY: what people write; the rest are system messages (joins, pins, ...). */
  type: z.int().default(0),
  webhook_id: z.string().optional(),
  mentions: z.array(z.looseObject({ id: z.string() })).default([]),
  attachments: z
    .array(
      z.looseObject({
        id: z.string(),
        filename: z.string().min(1).max(300),
        size: z.int().min(0).optional(),
        url: z.string().min(1).max(2000),
        content_type: z.string().min(1).max(200).optional(),
      }),
    )
    .default([]),
  sticker_items: z
    .array(z.looseObject({ id: z.string().min(1), name: z.string().min(1).max(300) }))
    .default([]),
  message_reference: z.looseObject({ message_id: z.string().max(200).optional() }).optional(),
});
export type DiscordMessage = z.infer<typeof DiscordMessage>;

/** Message types people write: DEFAULT and REPLY. */
const PERSON_TYPES = new Set([0, 19]);

/**
 * Reads one `MESSAGE_CREATE` as the message to run, or null when it is not one to answer: a
 * message from a bot (the account's own among them) or a webhook, a system message (a join, a
 * pin, a thread created), one in a guild that does not mention the bot (`botUserId`, from
 * READY; unknown, no guild message is taken), or one with neither text nor attachments. The
 * event is keyed by the message id, the same in every replay of the dispatch. A DM is a `dm`
 * conversation, a guild channel a `group`; the conversation id is the message's `channel_id`,
 * which for a message in a thread is the thread's own id (Discord's threads are channels), so
 * a thread is a conversation of its own and an answer sent there stays in it; no `threadId`
 * is set. The bot's `<@id>` / `<@!id>` mention is taken out of the text. Attachments and
 * stickers become references (the attachment's URL, its type, size and file name) under the
 * account's `media` caps; nothing is downloaded. Throws {@link ContractViolationError} naming
 * the field when `d` is not a message.
 */
export function normalizeDiscordMessage(
  data: unknown,
  { botUserId, media }: { botUserId: string | undefined; media: ChannelContract['media'] },
): NormalizedInbound | null {
  const message = parseContract(DiscordMessage, data);
  const { author } = message;
  if (author.bot === true || author.system === true || message.webhook_id !== undefined) {
    return null;
  }
  if (botUserId !== undefined && author.id === botUserId) return null;
  if (!PERSON_TYPES.has(message.type)) return null;
  const isDm = message.guild_id === undefined;
  if (!isDm && (botUserId === undefined || !message.mentions.some((u) => u.id === botUserId))) {
    return null;
  }
  const text = botUserId === undefined ? message.content : unmention(message.content, botUserId);
  const attachments: Attachment[] = [
    ...message.attachments.map((a) => ({
      kind: kindOf(a.content_type),
      ref: a.url,
      ...(a.content_type === undefined ? {} : { mimeType: a.content_type }),
      ...(a.size === undefined ? {} : { sizeBytes: a.size }),
      name: a.filename,
    })),
    ...message.sticker_items.map((s) => ({
      kind: 'sticker' as const,
      ref: `sticker:${s.id}`,
      name: s.name,
    })),
  ];
  if (text === '' && attachments.length === 0) return null;
  const displayName = author.global_name ?? author.username;
  const reference = message.message_reference?.message_id;
  const read = {
    externalEventId: message.id,
    sender: {
      id: author.id,
      ...(displayName ? { displayName: displayName.slice(0, 200) } : {}),
      isBot: false,
    },
    conversation: { kind: isDm ? 'dm' : 'group', id: message.channel_id },
    message: {
      text,
      ...(reference === undefined ? {} : { replyToExternalId: reference }),
      attachments: capAttachments(attachments, media),
    },
  };
  return parseContract(NormalizedInbound, toStorable(read));
}

function unmention(text: string, botUserId: string): string {
  return text.split(`<@${botUserId}>`).join('').split(`<@!${botUserId}>`).join('').trim();
}

function kindOf(contentType: string | undefined): Attachment['kind'] {
  if (contentType?.startsWith('image/')) return 'image';
  if (contentType?.startsWith('video/')) return 'video';
  if (contentType?.startsWith('audio/')) return 'audio';
  return 'file';
}
