import { appendAudit, checkpointAudit } from '../../db/auditEvents.ts';
import {
  listOverdueApprovals,
  listProjectIds,
  listStalledRuns,
  type StalledRun,
} from '../../db/sweeperQueries.ts';
import { withProject } from '../../db/withProject.ts';
import { withSweeper } from '../../db/withSweeper.ts';
import { decideApproval } from '../approvals/decideApproval.ts';
import type { Stage } from '../contracts/runJob.ts';
import { AppError } from '../errors.ts';
import { stageFor, type RunState } from '../contracts/runState.ts';
import { failRun } from '../runs/failRun.ts';
import { loadPinnedChannel } from '../runs/loadPinnedContracts.ts';
import { loadRun } from '../runs/loadRun.ts';
import type { Enqueue } from '../Enqueue.ts';
import type { StageContext } from '../StageContext.ts';
import type { ErrorCode } from '../errorCodes.ts';

/** What the sweeper needs from the queue layer. */
export type SweepDeps = {
  /**
   * The BullMQ state of a run's stage job, or of its failure-notice job with `notice`
   * (`unknown` when there is none).
   */
  jobState: (stage: Stage, runId: string, notice: boolean) => Promise<string>;
  enqueue: Enqueue;
  /** A run untouched this long is checked for a live job. */
  stallMs: number;
  /** Runs read per page (a sweep reads every page). @defaultValue 1000 */
  limit?: number;
};

/** What one sweep did. */
export type SweepReport = {
  checked: number;
  requeued: number;
  timedOut: number;
  exhausted: number;
  /** Approvals that passed their expiry undecided; their runs end with `APPROVAL_EXPIRED`. */
  expired: number;
};

const LIVE_JOB_STATES = new Set([
  'active',
  'waiting',
  'delayed',
  'prioritized',
  'waiting-children',
]);

/**
 * Finds runs that sit unfinished past the stall time with no live job — after a Redis flush,
 * an enqueue lost after its commit, a crashed worker — and enqueues their current stage again;
 * Postgres is the source of truth, Redis only carries the work. A run past its deadline ends
 * with `RUN_TIMEOUT`; one whose job used up its attempts without failing the run ends with
 * `STAGE_FAILED`. Failed runs with an unsent failure notice get their deliver job back.
 * Harmless twice: it enqueues only where no live job exists, job ids are per run and stage,
 * and every stage skips a run that has moved on.
 */
export async function sweep(ctx: StageContext, deps: SweepDeps): Promise<SweepReport> {
  // Paged by run id so every stalled run is seen each sweep, however many have live jobs.
  const pageSize = deps.limit ?? 1000;
  const stalled: StalledRun[] = [];
  for (let after = '00000000-0000-0000-0000-000000000000'; ;) {
    const page = await withSweeper(ctx.pool, (tx) =>
      listStalledRuns(tx, { stallMs: deps.stallMs, after, limit: pageSize }),
    );
    stalled.push(...page);
    if (page.length < pageSize) break;
    after = page.at(-1)!.runId;
  }
  const report: SweepReport = {
    checked: stalled.length,
    requeued: 0,
    timedOut: 0,
    exhausted: 0,
    expired: await expireApprovals(ctx, deps),
  };
  // A run can match two branches (a waiting run past its deadline with an unsent notice):
  // it is handled once, as overdue if either says so.
  const byRun = new Map<string, StalledRun>();
  for (const run of stalled) {
    const seen = byRun.get(run.runId);
    byRun.set(
      run.runId,
      seen
        ? {
            ...seen,
            overdue: seen.overdue || run.overdue,
            answerInFlight: seen.answerInFlight || run.answerInFlight,
          }
        : run,
    );
  }
  report.checked = byRun.size;
  const sweepOne = async (run: StalledRun) => {
    const notice = run.state === 'FAILED';
    const stage: Stage = notice ? 'deliver' : stageFor(run.state)!;
    const state = await deps.jobState(stage, run.runId, notice);
    const job = { projectId: run.projectId, runId: run.runId, traceId: run.traceId, stage };
    // A run whose answer is being sent, or all sent, is not timed out: the failure notice
    // would follow an answer the user may already have. Deliver ends it within its own
    // attempts (a chunk a dead sender held is settled `uncertain` once its lease runs out, never
    // sent twice); a chunk still queued after one in flight can time the run out later.
    if (run.overdue && state !== 'active' && !run.answerInFlight) {
      if (
        await endRun(
          ctx,
          job,
          run.state,
          'RUN_TIMEOUT',
          'the run did not finish before its deadline',
        )
      ) {
        report.timedOut += 1;
        await deps.enqueue('deliver', job, { notice: true });
      }
      return;
    }
    if (LIVE_JOB_STATES.has(state)) return;
    if (state === 'failed' && !notice) {
      if (
        await endRun(ctx, job, run.state, 'STAGE_FAILED', `the ${stage} stage used up its attempts`)
      ) {
        report.exhausted += 1;
        await deps.enqueue('deliver', job, { notice: true });
      }
      return;
    }
    // A notice whose own job used up its attempts stays unsent; the failed job shows why.
    if (state === 'failed') return;
    await deps.enqueue(stage, job, { notice });
    await withProject(ctx.pool, run.projectId, (tx) =>
      appendAudit(tx, {
        projectId: run.projectId,
        chain: `run:${run.runId}`,
        actor: ctx.actor,
        action: 'run.requeued',
        subject: `run:${run.runId}`,
        detail: { stage, state: run.state, job_state: state },
        traceId: run.traceId,
        runId: run.runId,
      }),
    );
    report.requeued += 1;
  };
  for (const run of byRun.values()) {
    try {
      await sweepOne(run);
    } catch (error) {
      // One run that cannot be handled now does not hold up the others; the next sweep
      // finds it again.
      ctx.logger.warn(
        {
          runId: run.runId,
          projectId: run.projectId,
          err: error instanceof Error ? error.message : String(error),
        },
        'sweep could not handle a run',
      );
    }
  }
  return report;
}

/**
 * Expires the pending approvals past their expiry: each run ends with `APPROVAL_EXPIRED` and
 * its user gets the failure notice. Harmless twice: deciding refuses an approval that is no
 * longer pending, and the run's transition is conditional on `WAITING_APPROVAL`.
 */
async function expireApprovals(ctx: StageContext, deps: SweepDeps): Promise<number> {
  const overdue = await withSweeper(ctx.pool, (tx) => listOverdueApprovals(tx, deps.limit ?? 1000));
  let expired = 0;
  for (const { approvalId, projectId } of overdue) {
    try {
      await decideApproval(
        {
          pool: ctx.pool,
          enqueue: deps.enqueue,
          contracts: ctx.contracts,
          channels: ctx.channels,
          logger: ctx.logger,
        },
        { projectId, approvalId, decision: 'expired', decidedBy: ctx.actor, via: 'sweeper' },
      );
      expired += 1;
    } catch (error) {
      // Decided meanwhile by a human: nothing to expire. Any other failure is this approval's
      // alone; the next sweep tries it again, and the other runs are not held up by it.
      if (error instanceof AppError && error.code === 'APPROVAL_ALREADY_DECIDED') continue;
      ctx.logger.warn(
        { projectId, approvalId, err: error instanceof Error ? error.message : String(error) },
        'could not expire an approval',
      );
    }
  }
  return expired;
}

/**
 * Fails a run the sweep found stuck. Harmless twice, and never behind a live stage's back:
 * only a run still in the state the sweep saw is failed.
 */
async function endRun(
  ctx: StageContext,
  job: { projectId: string; runId: string; traceId: string; stage: Stage },
  seen: RunState,
  code: ErrorCode,
  message: string,
): Promise<boolean> {
  return withProject(ctx.pool, job.projectId, async (tx) => {
    const run = await loadRun(tx, job);
    const channel = await loadPinnedChannel(ctx, tx, run);
    return failRun(
      ctx,
      tx,
      run,
      { code, message },
      { stage: 'sweeper', startedAt: ctx.now(), channel, from: seen },
    );
  });
}

/**
 * Folds every project's settled audit rows into its checkpoint chain. Harmless twice: a
 * project with nothing new since its last checkpoint gets none.
 */
export async function checkpointAllProjects(
  ctx: StageContext,
  settleSeconds = 300,
): Promise<number> {
  const projects = await withSweeper(ctx.pool, listProjectIds);
  let written = 0;
  for (const { projectId } of projects) {
    const cp = await withProject(ctx.pool, projectId, (tx) =>
      checkpointAudit(tx, projectId, { settleSeconds }),
    );
    if (cp) written += 1;
  }
  return written;
}
