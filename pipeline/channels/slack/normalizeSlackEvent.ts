import { z } from 'zod';
import { parseContract } from '../../contracts/formatIssues.ts';
import { toStorable } from '../../contracts/storableText.ts';
import type { Attachment } from '../../contracts/conversationEvent.ts';
import { capAttachments, type MediaCaps } from '../capAttachments.ts';
import { NormalizedInbound, type InboundBatch } from '../inboundTypes.ts';

/**
 * A file shared in a message. Only `id` is certain: a file from another workspace (Slack
 * Connect) comes as `{ id, file_access: 'check_file_info' }`, to be looked up, which is a
 * download of sorts this reader never makes.
 */
const SlackFile = z.looseObject({
  id: z.string().min(1),
  name: z.string().nullable().optional(),
  title: z.string().nullable().optional(),
  mimetype: z.string().nullable().optional(),
  size: z.int().min(0).nullable().optional(),
});
type SlackFile = z.infer<typeof SlackFile>;

// Loose objects throughout: Slack adds fields to its payloads without notice.
const SlackMessageEvent = z.looseObject({
  type: z.string(),
  subtype: z.string().optional(),
  user: z.string().min(1).optional(),
  bot_id: z.string().optional(),
  text: z.string().optional(),
  ts: z.string().min(1).optional(),
  thread_ts: z.string().min(1).optional(),
  channel: z.string().min(1).optional(),
  channel_type: z.string().optional(),
  files: z.array(SlackFile).optional(),
});

/** The parts of an Events API request body the pipeline reads. */
export const SlackEnvelope = z.discriminatedUnion('type', [
  z.looseObject({ type: z.literal('url_verification'), challenge: z.string().min(1).max(500) }),
  z.looseObject({
    type: z.literal('event_callback'),
    event_id: z.string().min(1).max(200),
    team_id: z.string().optional(),
    /** The installation the event is visible to: its `user_id` is the bot's own user. */
    authorizations: z
      .array(z.looseObject({ user_id: z.string().optional(), is_bot: z.boolean().optional() }))
      .optional(),
    event: SlackMessageEvent,
  }),
  // Sent when Slack stops delivering for a while (over 30 000 events an hour): nothing to answer.
  z.looseObject({ type: z.literal('app_rate_limited') }),
]);
export type SlackEnvelope = z.infer<typeof SlackEnvelope>;

/** What one Events API request asks for: its challenge echoed, or these events acted on. */
export type SlackInbound =
  { kind: 'challenge'; challenge: string } | { kind: 'events'; batch: InboundBatch };

/**
 * Reads an Events API request body. `url_verification` gives the challenge to echo. An
 * `event_callback` becomes one event keyed by `event_id` (the same for every retry of it)
 * when it is an `app_mention` or a direct message (`message` with `channel_type: im`) from a
 * person; anything else is counted as ignored: other event types, a message with a `subtype`
 * other than `file_share` (edits, deletions, joins, bot posts), a message from a bot
 * (`bot_id`) or from the app's own bot user. Its `files` are kept as {@link Attachment}
 * references (file id, name, type, size; nothing is fetched) under the account's `media`
 * caps, and a message of files alone has an empty text. The session's thread is the message's `thread_ts`, or its own `ts` when it starts
 * one, since the answer goes into that thread. The bot's own `<@U…>` mention is taken out of
 * the text and Slack's `&amp;` `&lt;` `&gt;` are decoded, so the agent reads what was typed.
 * Throws {@link ContractViolationError} naming the bad field when the body is not an envelope.
 */
export function normalizeSlackEvent(body: unknown, media?: MediaCaps): SlackInbound {
  const envelope = parseContract(SlackEnvelope, body);
  if (envelope.type === 'url_verification') {
    return { kind: 'challenge', challenge: envelope.challenge };
  }
  const ignored: SlackInbound = { kind: 'events', batch: { events: [], ignored: 1 } };
  if (envelope.type !== 'event_callback') return ignored;
  const event = envelope.event;
  const botUser = envelope.authorizations?.find((a) => a.is_bot !== false)?.user_id;
  const isDm = event.type === 'message' && event.channel_type === 'im';
  if (event.type !== 'app_mention' && !isDm) return ignored;
  if ((event.subtype !== undefined && event.subtype !== 'file_share') || event.bot_id !== undefined)
    return ignored;
  const { user, ts, channel } = event;
  const attachments = capAttachments((event.files ?? []).map(attachmentOf), media);
  const text = event.text ?? (attachments.length > 0 ? '' : undefined);
  if (user === undefined || ts === undefined || channel === undefined || text === undefined) {
    return ignored;
  }
  if (botUser !== undefined && user === botUser) return ignored;
  const read = {
    externalEventId: envelope.event_id,
    sender: { id: user, isBot: false },
    conversation: { kind: isDm ? 'dm' : 'group', id: channel, threadId: event.thread_ts ?? ts },
    message: { text: readableText(text, botUser), attachments },
  };
  const normalized = parseContract(NormalizedInbound, toStorable(read));
  return { kind: 'events', batch: { events: [normalized], ignored: 0 } };
}

/** The text as typed: without the bot's own mention, Slack's three escapes decoded. */
function readableText(text: string, botUser: string | undefined): string {
  const unmentioned = botUser === undefined ? text : text.split(`<@${botUser}>`).join('');
  return unmentioned.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&').trim();
}

/** A shared file as a reference: its kind read from its MIME type. */
function attachmentOf(file: SlackFile): Attachment {
  const mime = file.mimetype ?? undefined;
  const top = mime?.split('/')[0];
  const kind = top === 'image' || top === 'video' || top === 'audio' ? top : 'file';
  const name = file.name || file.title;
  return {
    kind,
    ref: file.id,
    ...(mime ? { mimeType: mime.slice(0, 200) } : {}),
    ...(file.size === null || file.size === undefined ? {} : { sizeBytes: file.size }),
    ...(name ? { name: name.slice(0, 300) } : {}),
  };
}
