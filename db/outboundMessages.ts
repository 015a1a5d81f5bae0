import { sql, type CommonQueryMethods } from 'slonik';
import { z } from 'zod';

const OutboundRow = z.object({
  messageId: z.string(),
  projectId: z.string(),
  runId: z.string(),
  traceId: z.string(),
  kind: z.enum(['reply', 'status', 'failure']),
  chunkIndex: z.number(),
  chunkCount: z.number(),
  text: z.string(),
  format: z.enum(['plain', 'HTML', 'MarkdownV2']),
  status: z.enum(['queued', 'sending', 'sent', 'failed', 'suppressed']),
  method: z.string().nullable(),
  attempts: z.number(),
  leaseUntil: z.number().nullable(),
  externalMessageId: z.string().nullable(),
  errorCode: z.string().nullable(),
  createdAt: z.number(),
  sentAt: z.number().nullable(),
});
/** One row of the outbound ledger. */
export type OutboundRow = z.infer<typeof OutboundRow>;
export type OutboundKind = OutboundRow['kind'];

const COLUMNS = sql.fragment`
  message_id AS "messageId", project_id AS "projectId", run_id AS "runId", trace_id AS "traceId",
  kind, chunk_index AS "chunkIndex", chunk_count AS "chunkCount", text, format, status, method,
  attempts, lease_until AS "leaseUntil", external_message_id AS "externalMessageId",
  error_code AS "errorCode", created_at AS "createdAt", sent_at AS "sentAt"`;

/**
 * Adds a run's chunks of one kind to the ledger, `queued` (or `suppressed` when the run is not
 * live). The (run, kind, chunk) key makes a second call harmless: existing rows are kept.
 */
export async function enqueueOutbound(
  db: CommonQueryMethods,
  run: { projectId: string; runId: string; traceId: string },
  kind: OutboundKind,
  chunks: readonly string[],
  { format, suppressed }: { format: OutboundRow['format']; suppressed: boolean },
): Promise<void> {
  if (chunks.length === 0) return;
  await db.query(sql.unsafe`
    INSERT INTO outbound_messages (project_id, run_id, trace_id, kind, chunk_index, chunk_count, text, format, status)
    SELECT ${run.projectId}, ${run.runId}, ${run.traceId}, ${kind}, i - 1, ${chunks.length}, t, ${format},
           ${suppressed ? 'suppressed' : 'queued'}
      FROM unnest(${sql.array(chunks, 'text')}) WITH ORDINALITY AS c(t, i)
    ON CONFLICT (run_id, kind, chunk_index) DO NOTHING`);
}

/** A run's ledger rows in send order: status first, then reply chunks, then failure notices. */
export async function listOutbound(
  db: CommonQueryMethods,
  runId: string,
): Promise<readonly OutboundRow[]> {
  return db.any(sql.type(OutboundRow)`
    SELECT ${COLUMNS} FROM outbound_messages WHERE run_id = ${runId}
     ORDER BY CASE kind WHEN 'status' THEN 0 WHEN 'reply' THEN 1 ELSE 2 END, chunk_index`);
}

/**
 * Claims a chunk for sending: `queued` → `sending` with a lease, or a `sending` row whose
 * lease ran out (its sender died mid-call). Returns null when someone else holds it or it is
 * already settled, so two deliver workers never send the same chunk at once.
 */
export async function claimOutbound(
  db: CommonQueryMethods,
  messageId: string,
  leaseMs: number,
): Promise<OutboundRow | null> {
  return db.maybeOne(sql.type(OutboundRow)`
    UPDATE outbound_messages
       SET status = 'sending', attempts = attempts + 1, updated_at = now(),
           lease_until = now() + make_interval(secs => ${leaseMs / 1000})
     WHERE message_id = ${messageId}
       AND (status = 'queued' OR (status = 'sending' AND lease_until < now()))
    RETURNING ${COLUMNS}`);
}

/** Settles a claimed chunk: sent (with the channel's message id), back to queued, or failed. */
export async function settleOutbound(
  db: CommonQueryMethods,
  messageId: string,
  outcome:
    | { status: 'sent'; method: string; externalMessageId?: string | null }
    | { status: 'queued'; errorCode: string }
    | { status: 'failed'; errorCode: string; method?: string },
): Promise<void> {
  await db.query(sql.unsafe`
    UPDATE outbound_messages SET
      status = ${outcome.status},
      method = coalesce(${'method' in outcome ? (outcome.method ?? null) : null}, method),
      external_message_id = ${outcome.status === 'sent' ? (outcome.externalMessageId ?? null) : null},
      error_code = ${'errorCode' in outcome ? outcome.errorCode : null},
      sent_at = CASE WHEN ${outcome.status === 'sent'} THEN now() END,
      lease_until = NULL,
      updated_at = now()
     WHERE message_id = ${messageId} AND status = 'sending'`);
}
