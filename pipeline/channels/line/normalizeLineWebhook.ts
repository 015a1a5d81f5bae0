import { z } from 'zod';
import { formatIssues, parseContract } from '../../contracts/formatIssues.ts';
import { toStorable } from '../../contracts/storableText.ts';
import { ContractViolationError } from '../../errors.ts';
import { NormalizedInbound, type InboundBatch } from '../inboundTypes.ts';

/**
 * How long a reply token is treated as good. LINE's last about a minute from the webhook;
 * the margin leaves room for the reply call itself.
 */
const REPLY_TOKEN_TTL_MS = 50_000;

// Loose objects throughout: LINE adds event types and fields without notice.
const LineEventEnvelope = z.looseObject({
  type: z.string().min(1),
  mode: z.string().optional(),
  message: z.looseObject({ type: z.string() }).optional(),
});

/** A webhook body as LINE posts it; each event is only read as far as its kind here. */
export const LineWebhook = z.looseObject({
  destination: z.string(),
  events: z.array(LineEventEnvelope),
});

const LineSource = z.discriminatedUnion('type', [
  z.looseObject({ type: z.literal('user'), userId: z.string().min(1) }),
  z.looseObject({
    type: z.literal('group'),
    groupId: z.string().min(1),
    userId: z.string().min(1).optional(),
  }),
  z.looseObject({
    type: z.literal('room'),
    roomId: z.string().min(1),
    userId: z.string().min(1).optional(),
  }),
]);

/** A text message event: the one kind the pipeline answers. */
export const LineTextMessageEvent = z.looseObject({
  type: z.literal('message'),
  webhookEventId: z.string().min(1).max(200),
  timestamp: z.number(),
  mode: z.enum(['active', 'standby']).optional(),
  replyToken: z.string().min(1).optional(),
  source: LineSource,
  message: z.looseObject({
    type: z.literal('text'),
    id: z.string().min(1),
    text: z.string(),
    quotedMessageId: z.string().min(1).optional(),
  }),
});
type LineTextMessageEvent = z.infer<typeof LineTextMessageEvent>;

/**
 * Reads a LINE webhook body (after its signature was checked). Each text message event in
 * `active` mode becomes one event keyed by `webhookEventId`, with its reply token good until
 * `receivedAt` + 50 s; every other event (stickers, follows, joins, postbacks, events seen in
 * `standby` mode, which another channel answers) is counted as ignored. An empty `events` list
 * is LINE's endpoint verification call and is valid. Throws {@link ContractViolationError}
 * naming the bad field, e.g. `events[0].source.userId: required`. Each NUL and unpaired
 * surrogate in a string it reads is U+FFFD in the event.
 */
export function normalizeLineWebhook(body: unknown, receivedAt: Date): InboundBatch {
  const webhook = parseContract(LineWebhook, body);
  const batch: InboundBatch = { events: [], ignored: 0 };
  for (const [index, envelope] of webhook.events.entries()) {
    const isText =
      envelope.type === 'message' &&
      envelope.message?.type === 'text' &&
      envelope.mode !== 'standby';
    if (!isText) {
      batch.ignored += 1;
      continue;
    }
    batch.events.push(toInbound(parseEvent(index, envelope), receivedAt));
  }
  return batch;
}

function parseEvent(index: number, raw: unknown): LineTextMessageEvent {
  const result = LineTextMessageEvent.safeParse(raw);
  if (result.success) return result.data;
  const issues = result.error.issues.map((issue) => ({
    ...issue,
    path: ['events', index, ...issue.path],
  }));
  throw new ContractViolationError(formatIssues(new z.ZodError(issues)));
}

function toInbound(event: LineTextMessageEvent, receivedAt: Date): NormalizedInbound {
  const { source, message } = event;
  const conversation =
    source.type === 'user'
      ? { kind: 'dm' as const, id: source.userId }
      : { kind: 'group' as const, id: source.type === 'group' ? source.groupId : source.roomId };
  const read = {
    externalEventId: event.webhookEventId,
    // A group member who has not agreed to LINE's terms is sent without a userId.
    sender: { id: source.userId ?? conversation.id, isBot: false },
    conversation,
    message: {
      text: message.text,
      ...(message.quotedMessageId === undefined
        ? {}
        : { replyToExternalId: message.quotedMessageId }),
    },
    ...(event.replyToken === undefined
      ? {}
      : {
          replyToken: {
            value: event.replyToken,
            expiresAt: new Date(receivedAt.getTime() + REPLY_TOKEN_TTL_MS).toISOString(),
          },
        }),
  };
  // LINE redelivers what it got a 5xx for: a NUL or an unpaired surrogate Postgres would
  // refuse is stored as U+FFFD, in every string of the event, not a 500 on every retry.
  return parseContract(NormalizedInbound, toStorable(read));
}
