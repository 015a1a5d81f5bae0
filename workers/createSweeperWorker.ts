import { Queue, Worker } from 'bullmq';
import { stageJobId } from '../pipeline/contracts/runState.ts';
import type { StageContext } from '../pipeline/StageContext.ts';
import { applyRetention } from '../pipeline/sweeper/applyRetention.ts';
import { checkpointAllProjects, sweep } from '../pipeline/sweeper/sweep.ts';
import type { StageQueues } from './stageQueues.ts';

/** The sweeper's own queue and its scheduler id. */
export const SWEEPER_QUEUE = 'sweeper';
const CHECKPOINT_EVERY_MS = 60_000;
const RETENTION_EVERY_MS = 10 * 60_000;

/** A running sweeper shell; `close` stops its worker (waiting up to 5 s) and its queue. */
export type SweeperWorker = { close(): Promise<void> };

/**
 * The sweeper's BullMQ shell: a job scheduler fires a sweep every `everyMs` (one scheduler,
 * however many sweeper processes run); each sweep re-enqueues runs whose job was lost and ends
 * runs past their deadline. About once a minute it also checkpoints every project's audit
 * chain, and every ten minutes it runs the retention pass (`applyRetention`). `ctx.pool` must
 * be the sweeper's login.
 */
export async function createSweeperWorker(
  ctx: StageContext,
  {
    queues,
    prefix,
    everyMs,
    stallMs,
  }: {
    queues: StageQueues;
    /** The BullMQ key prefix, the stage queues' own. */
    prefix: string;
    /** How often a sweep runs. */
    everyMs: number;
    /** A run untouched this long is checked for a live job. */
    stallMs: number;
  },
): Promise<SweeperWorker> {
  const { logger } = ctx;
  const queue = new Queue(SWEEPER_QUEUE, { connection: ctx.redis, prefix });
  const schedule = () =>
    queue.upsertJobScheduler(
      'sweep',
      { every: everyMs },
      { name: 'sweep', opts: { removeOnComplete: true, removeOnFail: 100 } },
    );
  await schedule();
  let lastCheckpoint = 0;
  let lastRetention = 0;
  const worker = new Worker(
    SWEEPER_QUEUE,
    // Harmless twice (two sweepers, a stalled sweep): sweep() enqueues only where no live job
    // exists and fails only runs still in the state it saw; checkpoints skip settled ranges.
    async () => {
      // A Redis flush also removes the scheduler: put it back on every run.
      await schedule();
      const report = await sweep(ctx, {
        jobState: (stage, runId, notice) =>
          queues.queues[stage].getJobState(stageJobId(stage, runId, notice)),
        enqueue: queues.enqueue,
        stallMs,
      });
      if (report.requeued || report.timedOut || report.exhausted) logger.info(report, 'sweep');
      if (Date.now() - lastCheckpoint > CHECKPOINT_EVERY_MS) {
        lastCheckpoint = Date.now();
        await checkpointAllProjects(ctx);
      }
      // Harmless twice: the retention pass skips runs whose text is already gone and audits
      // only a project where it removed something.
      if (Date.now() - lastRetention > RETENTION_EVERY_MS) {
        lastRetention = Date.now();
        for (const removed of await applyRetention(ctx)) logger.info(removed, 'retention');
      }
      return report;
    },
    { connection: ctx.redis, prefix, concurrency: 1 },
  );
  worker.on('error', (error) => logger.warn({ err: error.message }, 'sweeper error'));
  // After a Redis flush the scheduler is gone and nothing fires; re-arm it from here too.
  const rearm = setInterval(() => void schedule().catch(() => {}), Math.max(1000, everyMs * 2));
  rearm.unref();
  return {
    async close() {
      clearInterval(rearm);
      await Promise.race([worker.close(), new Promise((r) => setTimeout(r, 5000).unref())]);
      await queue.close();
    },
  };
}
