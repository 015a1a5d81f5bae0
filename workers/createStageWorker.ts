import {
  DelayedError,
  UnrecoverableError,
  WaitingError,
  Worker,
  type ConnectionOptions,
  type Job,
} from 'bullmq';
import { z } from 'zod';
import { DATABASE_UNAVAILABLE, isDatabaseUnavailable } from '../db/isDatabaseUnavailable.ts';
import { withProject } from '../db/withProject.ts';
import { RunJob, type Stage } from '../pipeline/contracts/runJob.ts';
import { AppError, NonRetryableError, RetryAfterError } from '../pipeline/errors.ts';
import { releaseRun } from '../pipeline/admission/releaseRun.ts';
import { failRun } from '../pipeline/runs/failRun.ts';
import { loadPinnedChannel } from '../pipeline/runs/loadPinnedContracts.ts';
import { loadRun } from '../pipeline/runs/loadRun.ts';
import type { Enqueue } from '../pipeline/Enqueue.ts';
import type { StageContext } from '../pipeline/StageContext.ts';
import type { StageOutcome } from '../pipeline/stages/StageOutcome.ts';
import { stateFor } from '../pipeline/contracts/runState.ts';
import { boundedRetryAfterMs, stageBackoff } from './stageBackoff.ts';
import { BULKHEAD_WAIT_MS } from '../pipeline/bulkheads/createBulkheads.ts';
import type { ErrorCode } from '../pipeline/errorCodes.ts';

/** A stage function as the pipeline defines it: no BullMQ in sight. */
export type StageHandler = (
  ctx: StageContext,
  job: RunJob,
  options: { signal?: AbortSignal },
) => Promise<StageOutcome>;

/**
 * A stage job's data as the shell keeps it: the run's ids, and since when (epoch ms) this job
 * has found the database away, so its waits are bounded.
 */
const StageJobData = RunJob.extend({
  databaseAwaySince: z.number().int().nonnegative().optional(),
  /** How many times in a row this job found a share it needs full (its waits grow with it). */
  bulkheadWaits: z.number().int().nonnegative().optional(),
});

/** The longest one wait for a full share: how late a job notices a place came free. */
const BULKHEAD_WAIT_MAX_MS = 3000;

/** The n-th wait in a row for a full share: doubling from BULKHEAD_WAIT_MS, with jitter. */
function bulkheadDelayMs(waits: number): number {
  const base = Math.min(BULKHEAD_WAIT_MAX_MS, BULKHEAD_WAIT_MS * 2 ** Math.min(waits, 10));
  return Math.round(base * (0.75 + Math.random() / 2));
}

/**
 * How long one stage job waits out an unreachable database (delayed, no attempt spent) before
 * it gives the run to the sweeper, which enqueues it again once the database is back.
 */
export const DATABASE_WAIT_MS = 10 * 60_000;
/** The longest single delay while the database is away: how late a job notices it is back. */
const DATABASE_RETRY_MAX_MS = 15_000;

/** Called after each job with its stage, outcome and duration (metrics). */
export type StageObserver = (e: {
  stage: Stage;
  outcome: 'advanced' | 'waited' | 'retried' | 'failed';
  ms: number;
  code?: ErrorCode;
  /** For a wait on a full share: which kind (`project`, `mcp`, `channel`, `model`). */
  share?: string;
}) => void;

/**
 * The queue shell of one stage: parses `job.data` with its zod schema, calls the stage, and
 * enqueues the stage the run needs next. Three kinds of waiting move the job to delayed
 * without spending an attempt: a stage's own wait; a {@link RetryAfterError} that spends none
 * (a channel's `retry_after`, pacing), for its wait, at most ten minutes
 * (`RETRY_AFTER_MAX_MS`); and an unreachable database (a restart, a failover: see
 * {@link isDatabaseUnavailable}), with a growing delay, for up to `databaseWaitMs`, past
 * which the job ends and the run, still unfinished in Postgres, is the sweeper's. Any other
 * error spends an attempt and is retried with the stage's backoff, or, for a
 * `RetryAfterError` that spends one (a model route whose providers all said `Retry-After`),
 * no earlier than its wait ({@link stageBackoff}). An error that retrying cannot fix, or the
 * last attempt's error, ends the run with the error's code (the job stays failed, to inspect).
 */
export function createStageWorker({
  stage,
  handler,
  ctx,
  enqueue,
  connection,
  prefix,
  concurrency,
  lockMs = 30_000,
  databaseWaitMs = DATABASE_WAIT_MS,
  observe = () => {},
}: {
  stage: Stage;
  handler: StageHandler;
  ctx: StageContext;
  enqueue: Enqueue;
  connection: ConnectionOptions;
  prefix: string;
  concurrency: number;
  /**
   * How long a job's lock lasts without renewal (renewed at half of it while the event loop is
   * free). A worker that died holding a job gives it up after this long: the job is stalled and
   * run again. @defaultValue 30000
   */
  lockMs?: number;
  /**
   * How long one job waits out an unreachable database before it leaves the run to the
   * sweeper. @defaultValue {@link DATABASE_WAIT_MS}
   */
  databaseWaitMs?: number;
  observe?: StageObserver;
}): Worker {
  // Harmless twice (a stalled job runs again, a job delayed while the database was away or
  // its share was full runs again): each stage acts only on a run in its own state and moves
  // it with a conditional transition; the next stage's job id is per run and stage. A delayed
  // job keeps its id and stays live for the sweeper, which enqueues no second one.
  const processor = async (job: Job, token?: string, signal?: AbortSignal) => {
    const started = performance.now();
    const parsed = StageJobData.safeParse(job.data);
    if (!parsed.success || parsed.data.stage !== stage) {
      throw new UnrecoverableError(`job ${job.id} is not a ${stage} job`);
    }
    const { databaseAwaySince, bulkheadWaits = 0, ...data } = parsed.data;
    const elapsed = () => performance.now() - started;
    // One line per stage job: ids, stage, duration and outcome, never the run's text.
    const line = (outcome: string, extra: Record<string, unknown> = {}) => ({
      runId: data.runId,
      projectId: data.projectId,
      traceId: data.traceId,
      stage,
      outcome,
      durationMs: Math.round(elapsed()),
      ...extra,
    });
    // The database answered this time: a later outage is timed from its own start.
    const forgetOutage = async () => {
      if (databaseAwaySince !== undefined || bulkheadWaits > 0) await job.updateData(data);
    };
    /**
     * A share this job needs is full: the job goes back to delayed, without spending an
     * attempt, so it holds no worker slot another project's job could use while it waits.
     */
    const waitForShare = async (share: string) => {
      const waitMs = bulkheadDelayMs(bulkheadWaits);
      observe({ stage, outcome: 'waited', ms: elapsed(), code: 'BULKHEAD_FULL', share });
      ctx.logger.debug(line('waited', { code: 'BULKHEAD_FULL', share, waitMs }), 'stage done');
      await job.updateData({
        ...data,
        ...(databaseAwaySince === undefined ? {} : { databaseAwaySince }),
        bulkheadWaits: bulkheadWaits + 1,
      });
      await job.moveToDelayed(Date.now() + waitMs, token);
      throw new DelayedError();
    };
    // The project's share of this stage, across every worker of it: one project's stuck
    // jobs (a hung tool server, a hung channel API) fill only this, never the stage.
    const lease = await ctx.bulkheads.tryAcquire(
      `stage:${stage}:project:${data.projectId}`,
      ctx.bulkheads.limits.projectSlots,
    );
    if (!lease) return waitForShare('project');
    try {
      const outcome = await handler(ctx, data, signal ? { signal } : {});
      if ('waitMs' in outcome) {
        observe({ stage, outcome: 'waited', ms: elapsed() });
        ctx.logger.info(
          line('waited', { waitMs: outcome.waitMs, reason: outcome.reason }),
          'stage done',
        );
        await forgetOutage();
        await job.moveToDelayed(Date.now() + outcome.waitMs, token);
        throw new DelayedError();
      }
      const priority = job.opts.priority;
      if (outcome.next) {
        await enqueue(outcome.next, data, { notice: outcome.notice ?? false, priority });
      } else {
        // The run's chain of jobs has stopped (finished, failed, waiting for a human): it no
        // longer counts against its project's backlog or the platform's.
        await releaseRun(ctx.redis, ctx.redisPrefix, data);
      }
      observe({ stage, outcome: 'advanced', ms: elapsed() });
      ctx.logger.info(
        line('advanced', { next: outcome.next, ...(outcome.notice ? { notice: true } : {}) }),
        'stage done',
      );
    } catch (error) {
      if (error instanceof DelayedError) throw error;
      if (signal?.aborted) {
        // Cancelled by a stopping worker: hand the job back whole, without spending an attempt.
        await job.moveToWait(token);
        throw new WaitingError();
      }
      if (isDatabaseUnavailable(error)) {
        // The database is away, not the run at fault: no attempt is spent, nothing is written
        // (nothing can be), and the run stays in its state for this job or the sweeper.
        const now = Date.now();
        const since = databaseAwaySince ?? now;
        const code = DATABASE_UNAVAILABLE;
        observe({ stage, outcome: 'waited', ms: elapsed(), code });
        if (now - since >= databaseWaitMs) {
          ctx.logger.warn(
            line('left', { code, awayMs: now - since }),
            'database still unreachable; the sweeper will enqueue the run again',
          );
          return;
        }
        const delayMs = Math.min(DATABASE_RETRY_MAX_MS, Math.max(1000, (now - since) / 2));
        ctx.logger.warn(
          line('waited', {
            code,
            waitMs: Math.round(delayMs),
            awayMs: now - since,
            err: (error as Error).message,
          }),
          'database unreachable; the stage waits',
        );
        await job.updateData({ ...data, databaseAwaySince: since });
        await job.moveToDelayed(now + delayMs * (0.75 + Math.random() / 2), token);
        throw new DelayedError();
      }
      if (error instanceof RetryAfterError && error.code === 'BULKHEAD_FULL') {
        const share = error.detail['share'];
        return waitForShare(typeof share === 'string' ? share : 'dependency');
      }
      if (error instanceof RetryAfterError && !error.spendsAttempt) {
        const waitMs = boundedRetryAfterMs(error);
        observe({ stage, outcome: 'waited', ms: elapsed(), code: error.code });
        ctx.logger.info(line('waited', { code: error.code, waitMs }), 'stage done');
        await forgetOutage();
        await job.moveToDelayed(Date.now() + waitMs, token);
        throw new DelayedError();
      }
      const attempts = job.opts.attempts ?? 1;
      const final = error instanceof NonRetryableError || job.attemptsMade + 1 >= attempts;
      const code = error instanceof AppError ? error.code : 'STAGE_FAILED';
      ctx.logger.warn(
        line(final ? 'failed' : 'retried', {
          code,
          attempt: job.attemptsMade + 1,
          final,
          ...(error instanceof RetryAfterError ? { retryAfterMs: boundedRetryAfterMs(error) } : {}),
          err: error instanceof Error ? error.message : String(error),
        }),
        'stage failed',
      );
      if (!final) {
        observe({ stage, outcome: 'retried', ms: elapsed(), code });
        await forgetOutage();
        throw error;
      }
      observe({ stage, outcome: 'failed', ms: elapsed(), code });
      await endRun(ctx, data, stage, error, code);
      await enqueue('deliver', data, { notice: true, priority: job.opts.priority });
      throw new UnrecoverableError(
        `${code}: ${error instanceof Error ? error.message : String(error)}`,
      );
    } finally {
      await lease.release();
    }
  };
  const worker = new Worker(stage, processor, {
    connection,
    prefix,
    concurrency,
    autorun: true,
    lockDuration: lockMs,
    stalledInterval: lockMs,
    maxStalledCount: 3,
    // A failed attempt's delay: the stage's backoff, or a peer's longer Retry-After.
    settings: { backoffStrategy: stageBackoff },
  });
  // Without a listener BullMQ prints these to stderr. A job whose keys vanished (a Redis
  // flush) cannot be finished here; the sweeper re-enqueues its run from Postgres.
  worker.on('error', (error) => ctx.logger.warn({ stage, err: error.message }, 'worker error'));
  return worker;
}

/**
 * Fails the run for an error no retry will fix; the user sees the channel's short message.
 * Harmless twice: only a run still in this stage's state is failed.
 */
async function endRun(
  ctx: StageContext,
  job: RunJob,
  stage: Stage,
  error: unknown,
  code: ErrorCode,
) {
  const message = error instanceof AppError ? error.message : 'the stage failed';
  const detail = error instanceof AppError ? { ...error.detail } : {};
  await withProject(ctx.pool, job.projectId, async (tx) => {
    const run = await loadRun(tx, job).catch(() => null);
    if (!run) return;
    const channel = await loadPinnedChannel(ctx, tx, run).catch(() => null);
    await failRun(
      ctx,
      tx,
      run,
      { code, message, detail },
      { stage, startedAt: ctx.now(), channel, from: stateFor(stage) },
    );
  });
}
