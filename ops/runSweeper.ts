import { Worker } from 'bullmq';
import { checkpointAllProjects, sweep } from '../pipeline/stages/sweep.ts';
import { stageJobId } from '../pipeline/contracts/runState.ts';
import { createLogger } from './createLogger.ts';
import { createRuntime } from './createRuntime.ts';
import type { Config } from './loadConfig.ts';
import { onShutdown } from './onShutdown.ts';

/** The sweeper's own queue and its scheduler id. */
export const SWEEPER_QUEUE = 'sweeper';
const CHECKPOINT_EVERY_MS = 60_000;

/**
 * The `sweeper` process: a BullMQ job scheduler fires a sweep every AWOOOP_SWEEP_INTERVAL_MS
 * (one scheduler, however many sweeper processes run); each sweep re-enqueues runs whose job
 * was lost and ends runs past their deadline. About once a minute it also checkpoints every
 * project's audit chain.
 */
export async function runSweeper(config: Config): Promise<number> {
  const logger = createLogger({ level: config.LOG_LEVEL, name: 'sweeper' });
  // The sweeper's login may also read ids and states across projects (awooop_sweeper).
  const runtime = await createRuntime(config, {
    logger,
    actor: 'sweeper',
    maxPoolSize: 4,
    login: 'sweeper',
  });
  const { ctx, queues } = runtime;
  const { Queue } = await import('bullmq');
  const queue = new Queue(SWEEPER_QUEUE, {
    connection: ctx.redis,
    prefix: config.AWOOOP_REDIS_PREFIX,
  });
  const schedule = () =>
    queue.upsertJobScheduler(
      'sweep',
      { every: config.AWOOOP_SWEEP_INTERVAL_MS },
      { name: 'sweep', opts: { removeOnComplete: true, removeOnFail: 100 } },
    );
  await schedule();
  let lastCheckpoint = 0;
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
        stallMs: config.AWOOOP_STALL_MS,
      });
      if (report.requeued || report.timedOut || report.exhausted) logger.info(report, 'sweep');
      if (Date.now() - lastCheckpoint > CHECKPOINT_EVERY_MS) {
        lastCheckpoint = Date.now();
        await checkpointAllProjects(ctx);
      }
      return report;
    },
    { connection: ctx.redis, prefix: config.AWOOOP_REDIS_PREFIX, concurrency: 1 },
  );
  worker.on('error', (error) => logger.warn({ err: error.message }, 'sweeper error'));
  // After a Redis flush the scheduler is gone and nothing fires; re-arm it from here too.
  const rearm = setInterval(
    () => void schedule().catch(() => {}),
    Math.max(1000, config.AWOOOP_SWEEP_INTERVAL_MS * 2),
  );
  rearm.unref();
  logger.info(
    { everyMs: config.AWOOOP_SWEEP_INTERVAL_MS, stallMs: config.AWOOOP_STALL_MS },
    'sweeper running',
  );
  await onShutdown(logger, async () => {
    clearInterval(rearm);
    await Promise.race([worker.close(), new Promise((r) => setTimeout(r, 5000).unref())]);
    await queue.close();
    await runtime.close();
  });
  return 0;
}
