import { z } from 'zod';
import { ChannelType, Identifier, ProjectId, TraceId } from './common.ts';
import { Conversation } from './conversationEvent.ts';

/** One chunk of an answer on its way to a channel; one `outbound_messages` ledger row each. */
export const OutboundMessage = z
  .strictObject({
    messageId: z.uuid(),
    projectId: ProjectId,
    runId: z.uuid(),
    traceId: TraceId,
    channel: ChannelType,
    accountId: Identifier,
    conversation: Conversation,
    chunkIndex: z.int().min(0),
    chunkCount: z.int().min(1),
    text: z.string().min(1),
    format: z.enum(['plain', 'MarkdownV2', 'HTML', 'mrkdwn', 'discord']),
    /** Sent to the channel where it supports one (LINE `X-Line-Retry-Key`), so a resend is recognised. */
    idempotencyKey: z.string().min(1).max(200),
  })
  .refine((m) => m.chunkIndex < m.chunkCount, {
    message: 'must be less than chunkCount',
    path: ['chunkIndex'],
  });
export type OutboundMessage = z.infer<typeof OutboundMessage>;
