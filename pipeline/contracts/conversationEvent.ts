import { z } from 'zod';
import { ChannelType, Identifier, ProjectId, TraceId } from './common.ts';

/** Where a message was said: a direct chat or a group, optionally a thread in it. */
export const Conversation = z.strictObject({
  kind: z.enum(['dm', 'group']),
  id: z.string().min(1).max(200),
  threadId: z.string().min(1).max(200).optional(),
});

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
    replyToExternalId: z.string().max(200).optional(),
  }),
  replyToken: z.strictObject({ value: z.string().min(1), expiresAt: z.iso.datetime() }).optional(),
});
export type ConversationEvent = z.infer<typeof ConversationEvent>;
