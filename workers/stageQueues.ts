import { Queue, type ConnectionOptions, type JobsOptions } from 'bullmq';
import { RunJob, Stage } from '../pipeline/contracts/runJob.ts';
import { AppError } from '../pipeline/errors.ts';
import type { Enqueue } from '../pipeline/Enqueue.ts';
import { stageJobId } from '../pipeline/contracts/runState.ts';
import { STAGE_BACKOFF } from './stageBackoff.ts';

/**
 * Retries per stage: attempts and the base of the exponential backoff (with jitter), which a
 * peer's longer `Retry-After` overrides (see {@link STAGE_BACKOFF}).
 */
export const STAGE_RETRY: Record<Stage, { attempts: number; delayMs: number }> = {
  resolve: { attempts: 5, delayMs: 500 },
  policy: { attempts: 5, delayMs: 500 },
  execute: { attempts: 5, delayMs: 2000 },
  sanitize: { attempts: 5, delayMs: 500 },
  deliver: { attempts: 8, delayMs: 1000 },
};

/** Job options of a stage job: a job id per run and stage, retries, and bounded retention. */
export function stageJobOptions(stage: Stage, runId: string, notice = false): JobsOptions {
  const retry = STAGE_RETRY[stage];
  return {
    jobId: stageJobId(stage, runId, notice),
    attempts: retry.attempts,
    backoff: { type: STAGE_BACKOFF, delay: retry.delayMs, jitter: 0.5 },
    // Completed jobs go at once (Postgres holds the run); failed ones stay a week to inspect.
    removeOnComplete: true,
    removeOnFail: { age: 7 * 24 * 3600, count: 50_000 },
  };
}

/** The five stage queues of one process, and an `enqueue` over them. */
export type StageQueues = {
  queues: Record<Stage, Queue>;
  enqueue: Enqueue;
  close(): Promise<void>;
};

/**
 * Opens the stage queues under `prefix` on one shared connection. With `addTimeoutMs`, an
 * enqueue that Redis has not confirmed within that time rejects with `ENQUEUE_TIMEOUT`
 * instead of waiting for Redis to come back (the add may still land later: its job id is per
 * run and stage, so a late copy is the same job). A queue's connection errors go to `onError`
 * (BullMQ prints them to stderr when nobody listens).
 */
export function createStageQueues(
  connection: ConnectionOptions,
  prefix: string,
  { addTimeoutMs, onError }: { addTimeoutMs?: number; onError?: (error: Error) => void } = {},
): StageQueues {
  const queues = Object.fromEntries(
    Stage.options.map((stage) => {
      const queue = new Queue(stage, { connection, prefix });
      if (onError) queue.on('error', onError);
      return [stage, queue];
    }),
  ) as Record<Stage, Queue>;
  const enqueue: Enqueue = async (stage, job, options = {}) => {
    const data = RunJob.parse({ ...job, stage });
    const added = queues[stage].add(stage, data, {
      ...stageJobOptions(stage, job.runId, options.notice ?? false),
      // Every stage job is prioritized: BullMQ takes a job without a priority before any
      // prioritized one, which would let it overtake the fair order.
      priority: options.priority ?? 1,
      ...(options.delayMs ? { delay: options.delayMs } : {}),
    });
    if (addTimeoutMs === undefined) {
      await added;
      return;
    }
    // A late rejection of the abandoned add is expected (Redis away): nothing to report.
    added.catch(() => {});
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        added,
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () =>
              reject(
                new AppError('ENQUEUE_TIMEOUT', `Redis did not take the ${stage} job in time`, {
                  status: 503,
                }),
              ),
            addTimeoutMs,
          );
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  };
  return {
    queues,
    enqueue,
    async close() {
      await Promise.all(Object.values(queues).map((q) => q.close()));
    },
  };
}
