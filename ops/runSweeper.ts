import { createSweeperWorker } from '../workers/createSweeperWorker.ts';
import { createLogger } from './createLogger.ts';
import { createRuntime } from './createRuntime.ts';
import type { Config } from './loadConfig.ts';
import { onShutdown } from './onShutdown.ts';

/**
 * The `sweeper` process: the sweeper's worker (`createSweeperWorker`) fires a sweep every
 * AWOOOP_SWEEP_INTERVAL_MS, which re-enqueues runs whose job was lost and ends runs past their
 * deadline, about once a minute checkpoints every project's audit chain, and every ten minutes
 * runs the retention pass (`dataBoundary.retentionDays`).
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
  const sweeper = await createSweeperWorker(ctx, {
    queues,
    prefix: config.AWOOOP_REDIS_PREFIX,
    everyMs: config.AWOOOP_SWEEP_INTERVAL_MS,
    stallMs: config.AWOOOP_STALL_MS,
  });
  logger.info(
    { everyMs: config.AWOOOP_SWEEP_INTERVAL_MS, stallMs: config.AWOOOP_STALL_MS },
    'sweeper running',
  );
  await onShutdown(logger, async () => {
    await sweeper.close();
    await runtime.close();
  });
  return 0;
}
