import { z } from 'zod';
import { formatIssues, parseContract } from '../../contracts/formatIssues.ts';
import { toStorable } from '../../contracts/storableText.ts';
import type { Attachment } from '../../contracts/conversationEvent.ts';
import { ContractViolationError } from '../../errors.ts';
import { capAttachments, type MediaCaps } from '../capAttachments.ts';
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

/** What each message type the pipeline answers is, as an attachment (text is none). */
const ATTACHMENT_KINDS = {
  text: null,
  image: 'image',
  video: 'video',
  audio: 'audio',
  file: 'file',
  sticker: 'sticker',
} as const satisfies Record<string, Attachment['kind'] | null>;
type AnsweredType = keyof typeof ATTACHMENT_KINDS;
const isAnsweredType = (type: string | undefined): type is AnsweredType =>
  type !== undefined && Object.hasOwn(ATTACHMENT_KINDS, type);

/** A message event of a type the pipeline answers: text, or media kept as a reference. */
export const LineMessageEvent = z.looseObject({
  type: z.literal('message'),
  webhookEventId: z.string().min(1).max(200),
  timestamp: z.number(),
  mode: z.enum(['active', 'standby']).optional(),
  replyToken: z.string().min(1).optional(),
  source: LineSource,
  message: z.discriminatedUnion('type', [
    z.looseObject({
      type: z.literal('text'),
      id: z.string().min(1),
      text: z.string(),
      quotedMessageId: z.string().min(1).optional(),
    }),
    z.looseObject({ type: z.enum(['image', 'video', 'audio']), id: z.string().min(1) }),
    z.looseObject({
      type: z.literal('file'),
      id: z.string().min(1),
      fileName: z.string().optional(),
      fileSize: z.int().min(0).optional(),
    }),
    z.looseObject({
      type: z.literal('sticker'),
      id: z.string().min(1),
      /** What a message sticker says, if it says anything. */
      text: z.string().optional(),
      keywords: z.array(z.string()).optional(),
    }),
  ]),
});
type LineMessageEvent = z.infer<typeof LineMessageEvent>;

/**
 * Reads a LINE webhook body (after its signature was checked). Each message event in `active`
 * mode that is text, an image, a video, an audio message, a file or a sticker becomes one
 * event keyed by `webhookEventId`, with its reply token good until `receivedAt` + 50 s. Media
 * are kept as {@link Attachment} references (the message id, a file's name and size; LINE
 * gives no size for the rest, and nothing is fetched from its content API) under the
 * account's `media` caps, with an empty text; a sticker's name is its text or first keywords.
 * Every other event (locations, follows, joins, postbacks, events seen in `standby` mode,
 * which another channel answers) is counted as ignored. An empty `events` list
 * is LINE's endpoint verification call and is valid. Throws {@link ContractViolationError}
 * naming the bad field, e.g. `events[0].source.userId: required`. Each NUL and unpaired
 * surrogate in a string it reads is U+FFFD in the event.
 */
export function normalizeLineWebhook(
  body: unknown,
  receivedAt: Date,
  media?: MediaCaps,
): InboundBatch {
  const webhook = parseContract(LineWebhook, body);
  const batch: InboundBatch = { events: [], ignored: 0 };
  for (const [index, envelope] of webhook.events.entries()) {
    const answered =
      envelope.type === 'message' &&
      isAnsweredType(envelope.message?.type) &&
      envelope.mode !== 'standby';
    if (!answered) {
      batch.ignored += 1;
      continue;
    }
    batch.events.push(toInbound(parseEvent(index, envelope), receivedAt, media));
  }
  return batch;
}

function parseEvent(index: number, raw: unknown): LineMessageEvent {
  const result = LineMessageEvent.safeParse(raw);
  if (result.success) return result.data;
  const issues = result.error.issues.map((issue) => ({
    ...issue,
    path: ['events', index, ...issue.path],
  }));
  throw new ContractViolationError(formatIssues(new z.ZodError(issues)));
}

/** The message as an attachment, or none for text. */
function attachmentOf(message: LineMessageEvent['message']): Attachment[] {
  const kind = ATTACHMENT_KINDS[message.type];
  if (kind === null) return [];
  const base = { kind, ref: message.id };
  if (message.type === 'file') {
    return [
      {
        ...base,
        ...(message.fileName ? { name: message.fileName.slice(0, 300) } : {}),
        ...(message.fileSize === undefined ? {} : { sizeBytes: message.fileSize }),
      },
    ];
  }
  if (message.type === 'sticker') {
    const said = message.text || message.keywords?.slice(0, 3).join(', ');
    return [{ ...base, ...(said ? { name: said.slice(0, 300) } : {}) }];
  }
  return [base];
}

function toInbound(
  event: LineMessageEvent,
  receivedAt: Date,
  media: MediaCaps | undefined,
): NormalizedInbound {
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
    message:
      message.type === 'text'
        ? {
            text: message.text,
            ...(message.quotedMessageId === undefined
              ? {}
              : { replyToExternalId: message.quotedMessageId }),
          }
        : { text: '', attachments: capAttachments(attachmentOf(message), media) },
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
