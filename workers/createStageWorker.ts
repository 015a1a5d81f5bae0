import {
  DelayedError,
  UnrecoverableError,
  WaitingError,
  Worker,
  type ConnectionOptions,
  type Job,
} from 'bullmq';
import { withProject } from '../db/withProject.ts';
import { RunJob, type Stage } from '../pipeline/contracts/runJob.ts';
import { AppError, NonRetryableError, RetryAfterError } from '../pipeline/errors.ts';
import { failRun } from '../pipeline/stages/failRun.ts';
import { loadPinnedChannel } from '../pipeline/stages/loadPinnedContracts.ts';
import { loadRun } from '../pipeline/stages/loadRun.ts';
import type { Enqueue, StageContext, StageOutcome } from '../pipeline/stages/StageContext.ts';
import { stateFor } from '../pipeline/runs/runState.ts';

/** A stage function as the pipeline defines it: no BullMQ in sight. */
export type StageHandler = (
  ctx: StageContext,
  job: RunJob,
  options: { signal?: AbortSignal },
) => Promise<StageOutcome>;

/** Called after each job with its stage, outcome and duration (metrics). */
export type StageObserver = (e: {
  stage: Stage;
  outcome: 'advanced' | 'waited' | 'retried' | 'failed';
  ms: number;
  code?: string;
}) => void;

/**
 * The queue shell of one stage: parses `job.data` with its zod schema, calls the stage, and
 * enqueues the stage the run needs next. A wait or a peer's `retry_after` moves the job to
 * delayed without spending an attempt; an error that retrying cannot fix, or the last
 * attempt's error, ends the run with the error's code (the job stays failed, to inspect).
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
  observe?: StageObserver;
}): Worker {
  // Harmless twice (a stalled job runs again): each stage acts only on a run in its own state
  // and moves it with a conditional transition; the next stage's job id is per run and stage.
  const processor = async (job: Job, token?: string, signal?: AbortSignal) => {
    const started = performance.now();
    const parsed = RunJob.safeParse(job.data);
    if (!parsed.success || parsed.data.stage !== stage) {
      throw new UnrecoverableError(`job ${job.id} is not a ${stage} job`);
    }
    const data = parsed.data;
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
    try {
      const outcome = await handler(ctx, data, signal ? { signal } : {});
      if ('waitMs' in outcome) {
        observe({ stage, outcome: 'waited', ms: elapsed() });
        ctx.logger.info(line('waited', { waitMs: outcome.waitMs }), 'stage done');
        await job.moveToDelayed(Date.now() + outcome.waitMs, token);
        throw new DelayedError();
      }
      if (outcome.next) await enqueue(outcome.next, data, { notice: outcome.notice ?? false });
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
      if (error instanceof RetryAfterError) {
        observe({ stage, outcome: 'waited', ms: elapsed(), code: error.code });
        ctx.logger.info(
          line('waited', { code: error.code, waitMs: error.retryAfterMs }),
          'stage done',
        );
        await job.moveToDelayed(Date.now() + error.retryAfterMs, token);
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
          err: error instanceof Error ? error.message : String(error),
        }),
        'stage failed',
      );
      if (!final) {
        observe({ stage, outcome: 'retried', ms: elapsed(), code });
        throw error;
      }
      observe({ stage, outcome: 'failed', ms: elapsed(), code });
      await endRun(ctx, data, stage, error, code);
      await enqueue('deliver', data, { notice: true });
      throw new UnrecoverableError(
        `${code}: ${error instanceof Error ? error.message : String(error)}`,
      );
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
async function endRun(ctx: StageContext, job: RunJob, stage: Stage, error: unknown, code: string) {
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
