import { sql, type CommonQueryMethods } from 'slonik';
import { z } from 'zod';
import type { AuditAction } from '../pipeline/contracts/auditActions.ts';

// Row schemas built once at load: zod compiles a schema on first use, so one built per
// call was paid on every query.
const AppendedRow = z.object({ auditId: z.number(), seq: z.number(), rowHash: z.string() });
const CountsRow = z.object({ events: z.number(), chains: z.number(), checkpoints: z.number() });

/** What a caller supplies for one audit row; seq, hashes and time are set by the database. */
export type AuditInput = {
  projectId: string;
  /** The subject's history this row extends, e.g. `run:<id>` or `contract:agent:sre`. */
  chain: string;
  actor: string;
  action: AuditAction;
  subject: string;
  detail?: Record<string, unknown>;
  traceId?: string | null;
  runId?: string | null;
};

/** Appends one row; the `link` trigger chains and hashes it. Returns its id, seq and hash. */
export async function appendAudit(db: CommonQueryMethods, input: AuditInput) {
  return db.one(sql.type(AppendedRow)`
    INSERT INTO audit_events (project_id, chain, actor, action, subject, detail, trace_id, run_id)
    VALUES (${input.projectId}, ${input.chain}, ${input.actor}, ${input.action}, ${input.subject},
            ${sql.jsonb(toJsonObject(input.detail ?? {}))}, ${input.traceId ?? null}, ${input.runId ?? null})
    RETURNING audit_id AS "auditId", seq, row_hash AS "rowHash"`);
}

const Checkpoint = z.object({
  checkpointId: z.number(),
  projectId: z.string(),
  seq: z.number(),
  eventCount: z.number(),
  checkpointHash: z.string(),
});

/**
 * Folds a project's settled audit rows since its last checkpoint into a new checkpoint.
 * Returns null when there was nothing new. Harmless to run twice: the second call finds no
 * rows past the checkpoint the first one wrote (and a concurrent twin fails on the unique
 * (project_id, seq) key instead of forking the checkpoint chain).
 */
export async function checkpointAudit(
  db: CommonQueryMethods,
  projectId: string,
  { settleSeconds = 300 }: { settleSeconds?: number } = {},
) {
  return db.maybeOne(sql.type(Checkpoint)`
    SELECT checkpoint_id AS "checkpointId", project_id AS "projectId", seq,
           event_count AS "eventCount", checkpoint_hash AS "checkpointHash"
      FROM audit_checkpoint(${projectId}, make_interval(secs => ${settleSeconds}))
     WHERE checkpoint_id IS NOT NULL`);
}

const Problem = z.object({
  kind: z.enum(['row_hash', 'gap', 'link', 'head', 'checkpoint']),
  projectId: z.string(),
  chain: z.string().nullable(),
  seq: z.number().nullable(),
  auditId: z.number().nullable(),
  message: z.string(),
});
export type AuditProblem = z.infer<typeof Problem>;

/** What {@link verifyAudit} found. */
export type AuditVerification = {
  events: number;
  chains: number;
  checkpoints: number;
  problems: readonly AuditProblem[];
};

/**
 * Recomputes every row hash, every chain link and sequence, every chain head and every
 * checkpoint digest visible to this transaction (one project under `withProject`, all under
 * `withPlatform`). Any edit, deletion or truncation of audit rows shows up as a problem.
 * The work happens in Postgres; only problems (at most `limit`) come back.
 */
export async function verifyAudit(
  db: CommonQueryMethods,
  { limit = 1000 }: { limit?: number } = {},
): Promise<AuditVerification> {
  const counts = await db.one(sql.type(CountsRow)`
    SELECT (SELECT count(*) FROM audit_events) AS events,
           (SELECT count(*) FROM audit_chain_heads) AS chains,
           (SELECT count(*) FROM audit_checkpoints) AS checkpoints`);

  const rows = await db.any(sql.type(Problem)`
    WITH w AS (
      SELECT audit_id, project_id, chain, seq, row_hash, prev_hash,
             audit_row_hash(project_id, chain, seq, occurred_at, actor, action, subject, detail,
                            trace_id, run_id, prev_hash) AS computed,
             lag(row_hash) OVER c AS lag_hash,
             lag(seq) OVER c AS lag_seq
        FROM audit_events
      WINDOW c AS (PARTITION BY project_id, chain ORDER BY seq)
    ),
    chain_problems AS (
      SELECT CASE
               WHEN computed <> row_hash THEN 'row_hash'
               WHEN seq <> coalesce(lag_seq, 0) + 1 THEN 'gap'
               ELSE 'link'
             END AS kind,
             project_id, chain, seq, audit_id,
             CASE
               WHEN computed <> row_hash THEN 'row content does not match its hash (edited)'
               WHEN seq <> coalesce(lag_seq, 0) + 1
                 THEN format('sequence jumps from %s to %s (rows deleted)', coalesce(lag_seq, 0), seq)
               ELSE 'previous-hash link is broken'
             END AS message
        FROM w
       WHERE computed <> row_hash
          OR seq <> coalesce(lag_seq, 0) + 1
          OR prev_hash <> coalesce(lag_hash, repeat('0', 64))
    ),
    head_problems AS (
      SELECT 'head' AS kind, coalesce(h.project_id, e.project_id) AS project_id,
             coalesce(h.chain, e.chain) AS chain, e.seq, e.audit_id,
             CASE
               WHEN h.chain IS NULL THEN 'chain has rows but no recorded head'
               WHEN e.seq IS NULL THEN format('chain head records %s rows, none remain', h.seq)
               ELSE format('chain head records seq %s, last row is seq %s (rows deleted or altered)', h.seq, e.seq)
             END AS message
        FROM audit_chain_heads h
        FULL JOIN (
          SELECT DISTINCT ON (project_id, chain) project_id, chain, seq, row_hash, audit_id
            FROM audit_events ORDER BY project_id, chain, seq DESC
        ) e ON e.project_id = h.project_id AND e.chain = h.chain
       WHERE h.seq IS DISTINCT FROM e.seq OR h.head_hash IS DISTINCT FROM e.row_hash
    ),
    cps AS (
      SELECT c.*, lag(c.checkpoint_hash) OVER p AS lag_hash, lag(c.seq) OVER p AS lag_seq,
             lag(c.to_audit_id) OVER p AS lag_to,
             audit_checkpoint_hash(c.project_id, c.seq, c.from_audit_id, c.to_audit_id,
                                   c.event_count, c.events_digest, c.prev_hash) AS computed,
             r.n, r.digest
        FROM audit_checkpoints c
        CROSS JOIN LATERAL (
          SELECT count(*) AS n,
                 encode(sha256(convert_to(coalesce(string_agg(row_hash, '' ORDER BY audit_id), ''), 'UTF8')), 'hex') AS digest
            FROM audit_events e
           WHERE e.project_id = c.project_id AND e.audit_id > c.from_audit_id AND e.audit_id <= c.to_audit_id
        ) r
      WINDOW p AS (PARTITION BY c.project_id ORDER BY c.seq)
    ),
    checkpoint_problems AS (
      SELECT 'checkpoint' AS kind, project_id, NULL::text AS chain, seq, NULL::bigint AS audit_id,
             CASE
               WHEN computed <> checkpoint_hash THEN format('checkpoint %s was altered', seq)
               WHEN seq <> coalesce(lag_seq, 0) + 1 OR prev_hash <> coalesce(lag_hash, repeat('0', 64))
                    OR from_audit_id <> coalesce(lag_to, 0)
                 THEN format('checkpoint chain is broken before checkpoint %s', seq)
               WHEN n <> event_count
                 THEN format('checkpoint %s covered %s rows, %s remain (rows deleted)', seq, event_count, n)
               ELSE format('rows covered by checkpoint %s were altered', seq)
             END AS message
        FROM cps
       WHERE computed <> checkpoint_hash
          OR seq <> coalesce(lag_seq, 0) + 1
          OR prev_hash <> coalesce(lag_hash, repeat('0', 64))
          OR from_audit_id <> coalesce(lag_to, 0)
          OR n <> event_count
          OR digest <> events_digest
    )
    SELECT kind, project_id AS "projectId", chain, seq, audit_id AS "auditId", message
      FROM (SELECT * FROM chain_problems UNION ALL SELECT * FROM head_problems
            UNION ALL SELECT * FROM checkpoint_problems) p
     ORDER BY "projectId", chain NULLS FIRST, seq NULLS FIRST
     LIMIT ${limit}`);
  return { ...counts, problems: rows };
}

/** JSON-safe copy of a detail object (drops undefined, turns Dates into ISO strings). */
function toJsonObject(value: Record<string, unknown>): Record<string, unknown> {
  return JSON.parse(JSON.stringify(value)) as Record<string, unknown>;
}
