import { z } from 'zod';
import { ChannelType, Identifier, ProjectId, TraceId } from './common.ts';

/** Where a message was said: a direct chat or a group, optionally a thread in it. */
export const Conversation = z.strictObject({
  kind: z.enum(['dm', 'group']),
  id: z.string().min(1).max(200),
  threadId: z.string().min(1).max(200).optional(),
});

/**
 * Something sent with a message (a photo, a file, a voice note), kept as a reference to the
 * channel's copy with its type and size: AwoooP never downloads it. `ref` is the channel's
 * handle (Telegram `file_id`, LINE message id, Slack file id, Discord attachment URL, an email
 * part's content id). `omitted` says why it is only mentioned (over the account's
 * `media.maxBytes`, or past `media.maxAttachments`).
 */
export const Attachment = z.strictObject({
  kind: z.enum(['image', 'video', 'audio', 'file', 'sticker']),
  ref: z.string().min(1).max(2000),
  mimeType: z.string().min(1).max(200).optional(),
  /** Bytes, as the channel reports them; absent where the channel does not say before a download. */
  sizeBytes: z.int().min(0).optional(),
  name: z.string().min(1).max(300).optional(),
  omitted: z.enum(['too_large', 'too_many']).optional(),
});
export type Attachment = z.infer<typeof Attachment>;

/** Every inbound message, whatever its channel, normalized by ingress before it becomes a run. */
export const ConversationEvent = z.strictObject({
  eventId: z.uuid(),
  projectId: ProjectId,
  traceId: TraceId,
  channel: ChannelType,
  accountId: Identifier,
  /** The API key that sent it (API channel only); a `client` key reads only its own runs. */
  apiKeyId: z.uuid().optional(),
  /** The channel's own id for the event (Telegram update_id, LINE webhookEventId, ...): the dedupe key. */
  externalEventId: z.string().min(1).max(200),
  receivedAt: z.iso.datetime(),
  sender: z.strictObject({
    id: z.string().min(1).max(200),
    displayName: z.string().max(200).optional(),
    isBot: z.boolean().default(false),
  }),
  conversation: Conversation,
  message: z.strictObject({
    text: z.string().max(100_000),
    /** The message's subject, where the channel has one (email): an answer keeps it (`Re: …`). */
    subject: z.string().max(998).optional(),
    replyToExternalId: z.string().max(200).optional(),
    /** What came with the text, as references (see {@link Attachment}); capped per account. */
    attachments: z.array(Attachment).max(100).default([]),
  }),
  replyToken: z.strictObject({ value: z.string().min(1), expiresAt: z.iso.datetime() }).optional(),
});
export type ConversationEvent = z.infer<typeof ConversationEvent>;
