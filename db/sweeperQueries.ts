import { sql, type CommonQueryMethods } from 'slonik';
import { z } from 'zod';
import { RUN_STATES } from '../pipeline/contracts/runState.ts';

// The sweeper's reads across projects: each runs inside `withSweeper`, whose role grants only
// the columns named here.

const StalledRun = z.object({
  runId: z.string(),
  projectId: z.string(),
  traceId: z.string(),
  state: z.enum(RUN_STATES),
  overdue: z.boolean(),
  answerInFlight: z.boolean(),
});
/**
 * A run the sweep looks at; `overdue` when it is past its deadline; `answerInFlight` when what
 * is left of it is deliver's: a chunk of its answer is being sent, or none is left queued, or
 * its answer waits on an account an operator stopped (no timeout for the operator's wait).
 */
export type StalledRun = z.infer<typeof StalledRun>;

const OverdueApproval = z.object({ approvalId: z.string(), projectId: z.string() });
const ProjectIdRow = z.object({ projectId: z.string() });

/**
 * One page, by run id after `after`, of the runs that may need the sweep: unfinished runs
 * untouched for `stallMs` (a waiting run only once past its deadline), waiting runs with an
 * approver's notice left unsent, and failed runs with an unsent failure notice. A run can
 * appear twice (a waiting run past its deadline with an unsent notice).
 */
export async function listStalledRuns(
  db: CommonQueryMethods,
  { stallMs, after, limit }: { stallMs: number; after: string; limit: number },
): Promise<readonly StalledRun[]> {
  return db.any(sql.type(StalledRun)`
    SELECT * FROM (
      SELECT run_id AS "runId", project_id AS "projectId", trace_id AS "traceId", state,
             deadline_at < now() AS overdue,
             (EXISTS (SELECT 1 FROM outbound_messages o
                       WHERE o.run_id = runs.run_id AND o.kind = 'reply' AND o.status = 'sending')
              OR (EXISTS (SELECT 1 FROM outbound_messages o
                           WHERE o.run_id = runs.run_id AND o.kind = 'reply')
                  AND NOT EXISTS (SELECT 1 FROM outbound_messages o
                                   WHERE o.run_id = runs.run_id AND o.kind = 'reply'
                                     AND o.status = 'queued'))
              -- an answer waiting on an account an operator stopped is waiting on them
              OR (state = 'SANITIZED'
                  AND EXISTS (SELECT 1 FROM channel_accounts ca
                               WHERE ca.project_id = runs.project_id
                                 AND ca.account_id = runs.account_id
                                 AND ca.desired_state = 'stopped'))) AS "answerInFlight"
        FROM runs
       WHERE state NOT IN ('COMPLETED', 'FAILED')
         AND updated_at < now() - make_interval(secs => ${stallMs / 1000})
         -- a waiting run is left alone until its deadline (past its approval's expiry)
         AND (state <> 'WAITING_APPROVAL' OR deadline_at < now())
      UNION
      -- a waiting run is stalled only while an approver's notice is left unsent
      SELECT DISTINCT r.run_id, r.project_id, r.trace_id, r.state, false, false
        FROM outbound_messages n JOIN approvals a USING (approval_id) JOIN runs r ON r.run_id = a.run_id
       WHERE n.kind = 'approval' AND r.state = 'WAITING_APPROVAL' AND a.status = 'pending'
         AND n.status IN ('queued', 'sending')
         AND n.updated_at < now() - make_interval(secs => ${stallMs / 1000})
         AND (n.lease_until IS NULL OR n.lease_until < now())
      UNION
      SELECT r.run_id, r.project_id, r.trace_id, r.state, false, false
        FROM outbound_messages o JOIN runs r USING (run_id)
       WHERE r.state = 'FAILED' AND o.kind = 'failure' AND o.status IN ('queued', 'sending')
         AND o.updated_at < now() - make_interval(secs => ${stallMs / 1000})
         AND (o.lease_until IS NULL OR o.lease_until < now())
    ) s
     WHERE "runId" > ${after}::uuid
     ORDER BY "runId"
     LIMIT ${limit}`);
}

/** Up to `limit` pending approvals past their expiry, the longest expired first. */
export async function listOverdueApprovals(
  db: CommonQueryMethods,
  limit: number,
): Promise<readonly z.infer<typeof OverdueApproval>[]> {
  return db.any(sql.type(OverdueApproval)`
    SELECT approval_id AS "approvalId", project_id AS "projectId" FROM approvals
     WHERE status = 'pending' AND expires_at <= now()
     ORDER BY expires_at LIMIT ${limit}`);
}

/** Every project's id, in order. */
export async function listProjectIds(
  db: CommonQueryMethods,
): Promise<readonly z.infer<typeof ProjectIdRow>[]> {
  return db.any(sql.type(ProjectIdRow)`
    SELECT project_id AS "projectId" FROM projects ORDER BY project_id`);
}
