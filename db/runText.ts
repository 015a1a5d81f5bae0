import { sql, type CommonQueryMethods } from 'slonik';
import { z } from 'zod';

const Removed = z.object({
  runs: z.number(),
  events: z.number(),
  steps: z.number(),
  toolCalls: z.number(),
  approvals: z.number(),
  outbound: z.number(),
});
/** Rows whose text was blanked, per table. */
export type RemovedText = z.infer<typeof Removed>;

const RETENTION_BATCH = 500;

/**
 * Blanks the message text of the given runs that have ended, in every table that holds it
 * (`awooop_remove_run_text`, migration 0017): the event, the output, the checkpoints, tool and
 * approval arguments, settled outbound rows. Runs still in flight are skipped; `keepAnswer`
 * keeps the output and reply rows of an answer stored for its client to read. Harmless
 * twice: a run whose text is gone is skipped, so the counts of a second call are zero.
 */
export async function removeRunText(
  db: CommonQueryMethods,
  runIds: readonly string[],
  { keepAnswer = false }: { keepAnswer?: boolean } = {},
): Promise<RemovedText> {
  return db.one(sql.type(Removed)`
    SELECT runs, events, steps, tool_calls AS "toolCalls", approvals, outbound
      FROM awooop_remove_run_text(${sql.array(runIds, 'uuid')}, ${keepAnswer})`);
}

/**
 * The retention pass's removal for one project (the caller's transaction is the project's):
 * the text of runs that ended more than `days` days ago, up to a batch, oldest first. The
 * caller repeats while a batch comes back full.
 */
export async function removeExpiredText(
  db: CommonQueryMethods,
  { projectId, days }: { projectId: string; days: number },
): Promise<RemovedText> {
  return db.one(sql.type(Removed)`
    SELECT runs, events, steps, tool_calls AS "toolCalls", approvals, outbound
      FROM awooop_remove_run_text(ARRAY(
        SELECT run_id FROM runs
         WHERE project_id = ${projectId} AND text_removed_at IS NULL
           AND completed_at < now() - make_interval(days => ${days})
         ORDER BY completed_at LIMIT ${RETENTION_BATCH}))`);
}

/** How many runs one {@link removeExpiredText} call handles at most. */
export const RETENTION_BATCH_SIZE = RETENTION_BATCH;

/**
 * The active project contract's `dataBoundary.retentionDays`, or null when it sets none (the
 * caller's transaction is the project's; the body was validated when it was published).
 */
export async function activeRetentionDays(
  db: CommonQueryMethods,
  projectId: string,
): Promise<number | null> {
  const row = await db.maybeOne(sql.type(z.object({ days: z.number().nullable() }))`
    SELECT (r.body #>> '{dataBoundary,retentionDays}')::int AS days
      FROM contract_active a JOIN contract_revisions r USING (project_id, kind, name, revision_id)
     WHERE a.project_id = ${projectId} AND a.kind = 'project'`);
  return row?.days ?? null;
}
