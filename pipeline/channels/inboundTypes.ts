import type { z } from 'zod';
import { ConversationEvent } from '../contracts/conversationEvent.ts';

/**
 * The channel-specific part of a {@link ConversationEvent}: what a channel plugin reads out of
 * a webhook. Ingress adds the ids, project, trace and receive time. Picked from the event's own
 * schema so the two never drift apart; typed as the schema's input, so what has a default
 * (no attachments) may be left out.
 */
export const NormalizedInbound = ConversationEvent.pick({
  externalEventId: true,
  sender: true,
  conversation: true,
  message: true,
  replyToken: true,
});
export type NormalizedInbound = z.input<typeof NormalizedInbound>;

/** What one webhook call held: the messages to act on, and how many events were skipped. */
export type InboundBatch = {
  events: NormalizedInbound[];
  /** Events that are valid but carry nothing to answer (stickers, joins, button presses, ...). */
  ignored: number;
};
