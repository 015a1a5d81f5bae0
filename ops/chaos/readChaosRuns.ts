import { sql, type DatabasePool } from 'slonik';
import { z } from 'zod';
import { withProject } from '../../db/withProject.ts';
import { RUN_STATES } from '../../pipeline/contracts/runState.ts';

const ChaosRun = z.object({
  runId: z.string(),
  state: z.enum(RUN_STATES),
  failureCode: z.string().nullable(),
  channel: z.string(),
  conversationKey: z.string(),
  live: z.boolean().nullable(),
  /** Ledger rows by status (`sent`, `uncertain`, `queued`, ...), every kind together. */
  ledger: z.record(z.string(), z.number()),
});
/** A run of the chaos project with its outbound ledger summed up. */
export type ChaosRun = z.infer<typeof ChaosRun>;

/** Every run of the project, with how many of its ledger rows are in each status. */
export async function readChaosRuns(
  pool: DatabasePool,
  projectId: string,
): Promise<readonly ChaosRun[]> {
  return withProject(pool, projectId, (tx) =>
    tx.any(sql.type(ChaosRun)`
      SELECT r.run_id AS "runId", r.state, r.failure_code AS "failureCode", r.channel,
             r.conversation_key AS "conversationKey", r.live,
             coalesce((SELECT jsonb_object_agg(status, n) FROM (
                         SELECT status, count(*) AS n FROM outbound_messages o
                          WHERE o.run_id = r.run_id GROUP BY status) s), '{}'::jsonb) AS ledger
        FROM runs r`),
  );
}

/** How many of `runIds` are not yet COMPLETED or FAILED. */
export async function countOpenRuns(
  pool: DatabasePool,
  projectId: string,
  runIds: readonly string[],
): Promise<number> {
  return withProject(pool, projectId, (tx) =>
    tx.oneFirst(sql.type(z.object({ open: z.number() }))`
      SELECT count(*) AS open FROM runs
       WHERE run_id = ANY(${sql.array([...runIds], 'uuid')})
         AND state NOT IN ('COMPLETED', 'FAILED')`),
  );
}
