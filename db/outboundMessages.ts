import { sql, type CommonQueryMethods } from 'slonik';
import { z } from 'zod';
import type { ErrorCode } from '../pipeline/errors.ts';

const OutboundRow = z.object({
  messageId: z.string(),
  projectId: z.string(),
  runId: z.string(),
  traceId: z.string(),
  kind: z.enum(['reply', 'status', 'failure', 'approval', 'alert']),
  chunkIndex: z.number(),
  chunkCount: z.number(),
  text: z.string(),
  format: z.enum(['plain', 'HTML', 'MarkdownV2', 'mrkdwn', 'discord']),
  status: z.enum(['queued', 'sending', 'sent', 'uncertain', 'failed', 'suppressed']),
  method: z.string().nullable(),
  attempts: z.number(),
  leaseUntil: z.number().nullable(),
  externalMessageId: z.string().nullable(),
  errorCode: z.string().nullable(),
  createdAt: z.number(),
  sentAt: z.number().nullable(),
  /**
   * An `approval` row's approval, recipient (no subject prefix) and the buttons it offers; an
   * `alert` row's recipient and its alert's key (`<period>/<limit>`).
   */
  approvalId: z.string().nullable(),
  recipient: z.string().nullable(),
  buttons: z.array(z.enum(['approved', 'rejected'])).nullable(),
  alertKey: z.string().nullable(),
});
/** One row of the outbound ledger. */
export type OutboundRow = z.infer<typeof OutboundRow>;
export type OutboundKind = OutboundRow['kind'];
/** The kinds that answer a run's conversation (not an approver's notice, not an owner's alert). */
export type AnswerKind = Exclude<OutboundKind, 'approval' | 'alert'>;
const ANSWER_KINDS = ['reply', 'status', 'failure'] as const satisfies readonly AnswerKind[];

const COLUMNS = sql.fragment`
  message_id AS "messageId", project_id AS "projectId", run_id AS "runId", trace_id AS "traceId",
  kind, chunk_index AS "chunkIndex", chunk_count AS "chunkCount", text, format, status, method,
  attempts, lease_until AS "leaseUntil", external_message_id AS "externalMessageId",
  error_code AS "errorCode", created_at AS "createdAt", sent_at AS "sentAt",
  approval_id AS "approvalId", recipient, buttons, alert_key AS "alertKey"`;

/**
 * Adds a run's chunks of one kind to the ledger, `queued` (or `suppressed` when the run is not
 * live). The (run, kind, chunk) key makes a second call harmless: existing rows are kept.
 */
export async function enqueueOutbound(
  db: CommonQueryMethods,
  run: { projectId: string; runId: string; traceId: string },
  kind: AnswerKind,
  chunks: readonly string[],
  { format, suppressed }: { format: OutboundRow['format']; suppressed: boolean },
): Promise<void> {
  if (chunks.length === 0) return;
  await db.query(sql.unsafe`
    INSERT INTO outbound_messages (project_id, run_id, trace_id, kind, chunk_index, chunk_count, text, format, status)
    SELECT ${run.projectId}, ${run.runId}, ${run.traceId}, ${kind}, i - 1, ${chunks.length}, t, ${format},
           ${suppressed ? 'suppressed' : 'queued'}
      FROM unnest(${sql.array(chunks, 'text')}) WITH ORDINALITY AS c(t, i)
    ON CONFLICT (run_id, kind, chunk_index) WHERE kind IN ('reply', 'status', 'failure') DO NOTHING`);
}

/**
 * A run's answer rows in send order: status first, then reply chunks, then failure notices;
 * with `alerts`, the owners' alerts the run crossed after them (in the same statement, for
 * the deliver stage, which sends both). Approval notices are not among them (they go to
 * approvers, not the run's conversation): see {@link listApprovalNotices}.
 */
export async function listOutbound(
  db: CommonQueryMethods,
  runId: string,
  { alerts = false }: { alerts?: boolean } = {},
): Promise<readonly OutboundRow[]> {
  const kinds: readonly OutboundKind[] = alerts ? [...ANSWER_KINDS, 'alert'] : ANSWER_KINDS;
  return db.any(sql.type(OutboundRow)`
    SELECT ${COLUMNS} FROM outbound_messages
     WHERE run_id = ${runId} AND kind = ANY(${sql.array([...kinds], 'text')})
     ORDER BY CASE kind WHEN 'status' THEN 0 WHEN 'reply' THEN 1 WHEN 'failure' THEN 2 ELSE 3 END,
              chunk_index, created_at, recipient`);
}

/**
 * Queues one approval's notice to each recipient (`approval` rows: the same text and buttons
 * for all). The (approval, recipient) key makes a second call harmless: existing rows are kept.
 */
export async function enqueueApprovalNotices(
  db: CommonQueryMethods,
  run: { projectId: string; runId: string; traceId: string },
  notice: { approvalId: string; text: string; buttons: readonly ('approved' | 'rejected')[] },
  recipients: readonly string[],
): Promise<void> {
  if (recipients.length === 0) return;
  await db.query(sql.unsafe`
    INSERT INTO outbound_messages (project_id, run_id, trace_id, kind, chunk_index, chunk_count,
                                   text, format, approval_id, recipient, buttons)
    SELECT ${run.projectId}, ${run.runId}, ${run.traceId}, 'approval', 0, 1, ${notice.text}, 'plain',
           ${notice.approvalId}, r, ${sql.array([...notice.buttons], 'text')}
      FROM unnest(${sql.array([...recipients], 'text')}) r
    ON CONFLICT (approval_id, recipient) WHERE kind = 'approval' DO NOTHING`);
}

/**
 * Queues one budget alert to each owner (`alert` rows, on the run that crossed the share).
 * The (project, alert key, recipient) key makes a second call harmless: existing rows are kept.
 */
export async function enqueueOwnerAlerts(
  db: CommonQueryMethods,
  run: { projectId: string; runId: string; traceId: string },
  alert: { alertKey: string; text: string },
  recipients: readonly string[],
): Promise<void> {
  if (recipients.length === 0) return;
  await db.query(sql.unsafe`
    INSERT INTO outbound_messages (project_id, run_id, trace_id, kind, chunk_index, chunk_count,
                                   text, format, recipient, alert_key)
    SELECT ${run.projectId}, ${run.runId}, ${run.traceId}, 'alert', 0, 1, ${alert.text}, 'plain',
           r, ${alert.alertKey}
      FROM unnest(${sql.array([...recipients], 'text')}) r
    ON CONFLICT (project_id, alert_key, recipient) WHERE kind = 'alert' DO NOTHING`);
}

/** The owners' alerts a run crossed, by creation and recipient. */
export async function listOwnerAlerts(
  db: CommonQueryMethods,
  runId: string,
): Promise<readonly OutboundRow[]> {
  return db.any(sql.type(OutboundRow)`
    SELECT ${COLUMNS} FROM outbound_messages WHERE run_id = ${runId} AND kind = 'alert'
     ORDER BY created_at, alert_key, recipient`);
}

/** The approval notices of one approval, or of every approval of a run, by approval and recipient. */
export async function listApprovalNotices(
  db: CommonQueryMethods,
  of: { approvalId: string } | { runId: string },
): Promise<readonly OutboundRow[]> {
  const where =
    'approvalId' in of
      ? sql.fragment`approval_id = ${of.approvalId}`
      : sql.fragment`run_id = ${of.runId}`;
  return db.any(sql.type(OutboundRow)`
    SELECT ${COLUMNS} FROM outbound_messages WHERE kind = 'approval' AND ${where}
     ORDER BY created_at, approval_id, recipient`);
}

/**
 * Settles the notices of a decided approval that are still `queued` as `failed` with the
 * decision's code: nobody needs asking any more. One being sent is left to its sender.
 * Harmless twice: only `queued` rows change.
 */
export async function failQueuedApprovalNotices(
  db: CommonQueryMethods,
  approvalId: string,
  errorCode: ErrorCode,
): Promise<number> {
  const result = await db.query(sql.unsafe`
    UPDATE outbound_messages SET status = 'failed', error_code = ${errorCode}, updated_at = now()
     WHERE kind = 'approval' AND approval_id = ${approvalId} AND status = 'queued'`);
  return result.rowCount;
}

/** A claimed chunk: the row as now held, and whether an earlier sender died holding it. */
export type ClaimedRow = OutboundRow & { takenOver: boolean };

/**
 * Claims a chunk for sending: `queued` → `sending` with a lease, or a `sending` row whose
 * lease ran out (its sender died mid-call: `takenOver`, and the call may have gone out).
 * Returns null when someone else holds it or it is already settled, so two deliver workers
 * never send the same chunk at once. The new `attempts` is the claim's fencing token.
 */
export async function claimOutbound(
  db: CommonQueryMethods,
  messageId: string,
  leaseMs: number,
): Promise<ClaimedRow | null> {
  return db.maybeOne(sql.type(OutboundRow.extend({ takenOver: z.boolean() }))`
    WITH o AS (
      SELECT status AS previous FROM outbound_messages WHERE message_id = ${messageId} FOR UPDATE
    )
    UPDATE outbound_messages
       SET status = 'sending', attempts = attempts + 1, updated_at = now(),
           lease_until = now() + make_interval(secs => ${leaseMs / 1000})
      FROM o
     WHERE message_id = ${messageId}
       AND (o.previous = 'queued' OR (o.previous = 'sending' AND lease_until < now()))
    RETURNING ${COLUMNS}, o.previous = 'sending' AS "takenOver"`);
}

/** How a claimed chunk ended. */
export type OutboundOutcome =
  | { status: 'sent'; method: string; externalMessageId?: string | null }
  | { status: 'uncertain'; method: string; errorCode: ErrorCode }
  | { status: 'queued'; errorCode: ErrorCode }
  | { status: 'failed'; errorCode: ErrorCode; method?: string };

/**
 * Settles a claimed chunk: sent (with the channel's message id), uncertain, back to queued,
 * or failed. Fenced by the claim's `attempts`: a sender whose lease ran out and whose row was
 * taken over changes nothing. Returns whether this claim still held the row.
 */
export async function settleOutbound(
  db: CommonQueryMethods,
  claim: { messageId: string; attempts: number },
  outcome: OutboundOutcome,
): Promise<boolean> {
  const result = await db.query(sql.unsafe`
    UPDATE outbound_messages SET
      status = ${outcome.status},
      method = coalesce(${'method' in outcome ? (outcome.method ?? null) : null}, method),
      external_message_id = ${outcome.status === 'sent' ? (outcome.externalMessageId ?? null) : null},
      error_code = ${'errorCode' in outcome ? outcome.errorCode : null},
      sent_at = CASE WHEN ${outcome.status === 'sent'} THEN now() END,
      lease_until = NULL,
      updated_at = now()
     WHERE message_id = ${claim.messageId} AND status = 'sending' AND attempts = ${claim.attempts}`);
  return result.rowCount > 0;
}

/**
 * Withdraws a run's unsent chunks of the given kinds (`queued` → `suppressed`, with a code):
 * a failed run's answer, or a progress note the answer has overtaken. A chunk being sent is
 * left to its sender. Harmless twice: only `queued` rows change.
 */
export async function withdrawOutbound(
  db: CommonQueryMethods,
  runId: string,
  kinds: readonly AnswerKind[],
  errorCode: ErrorCode,
): Promise<number> {
  const result = await db.query(sql.unsafe`
    UPDATE outbound_messages SET status = 'suppressed', error_code = ${errorCode}, updated_at = now()
     WHERE run_id = ${runId} AND status = 'queued' AND kind = ANY(${sql.array([...kinds], 'text')})`);
  return result.rowCount;
}

/**
 * Records a run's queued chunks of the given kinds as delivered by storing them (the API
 * channel without a callback: the answer is read from the run), in the caller's transaction.
 * There is no outside call, so claim and settle are one step. Harmless twice: only `queued`
 * rows change. Returns how many it recorded.
 */
export async function storeOutbound(
  db: CommonQueryMethods,
  runId: string,
  kinds: readonly AnswerKind[],
): Promise<number> {
  const result = await db.query(sql.unsafe`
    UPDATE outbound_messages
       SET status = 'sent', method = 'stored', attempts = attempts + 1, sent_at = now(),
           lease_until = NULL, error_code = NULL, updated_at = now()
     WHERE run_id = ${runId} AND status = 'queued' AND kind = ANY(${sql.array([...kinds], 'text')})`);
  return result.rowCount;
}

/**
 * Puts a run's unsent chunks of the given kinds back to `queued` for a retried run: those
 * withdrawn (`suppressed`) with one of `codes`, and with `refused`, those the channel refused
 * (`failed`). A `sent` or `uncertain` row is never touched, so nothing that may have reached
 * the channel goes out twice; a row keeps its id, and with it the idempotency key its channel
 * is sent (LINE's `X-Line-Retry-Key`, a callback's `Idempotency-Key`). Shadow rows
 * (`suppressed` with no code) stay suppressed. Harmless twice: a queued row no longer matches.
 */
export async function requeueOutbound(
  db: CommonQueryMethods,
  runId: string,
  kinds: readonly AnswerKind[],
  { codes, refused = false }: { codes: readonly ErrorCode[]; refused?: boolean },
): Promise<number> {
  const result = await db.query(sql.unsafe`
    UPDATE outbound_messages SET status = 'queued', error_code = NULL, lease_until = NULL, updated_at = now()
     WHERE run_id = ${runId} AND kind = ANY(${sql.array([...kinds], 'text')})
       AND ((status = 'suppressed' AND error_code = ANY(${sql.array([...codes], 'text')}))
            OR (${refused} AND status = 'failed'))`);
  return result.rowCount;
}
