import { configuredAdmission } from './configuredAdmission.ts';
import { createLogger } from './createLogger.ts';
import { createRuntime } from './createRuntime.ts';
import { databaseUrlFor, type Config } from './loadConfig.ts';
import { onShutdown } from './onShutdown.ts';
import { startChannels } from './startChannels.ts';
import { wireChannelManager } from './wireChannelManager.ts';

/**
 * The `channels` process: the ChannelManager, which keeps a status snapshot per channel
 * account, registers accounts that ask for it (Telegram's `setWebhook`) and holds the
 * long-lived connections of plugins that have one. It connects as the sweeper's login: the
 * scan across projects reads ids and states only, each account's contract is read under its
 * own project.
 */
export async function runChannels(config: Config): Promise<number> {
  const logger = createLogger({ level: config.LOG_LEVEL, name: 'channels' });
  const runtime = await createRuntime(config, {
    logger,
    actor: 'channels',
    maxPoolSize: 4,
    login: 'sweeper',
  });
  const { ctx, queues } = runtime;
  const manager = wireChannelManager(ctx, {
    enqueue: queues.enqueue,
    deliver: queues.queues.deliver,
    admission: configuredAdmission(config, ctx),
  });
  const loop = await startChannels({
    manager,
    listenUrl: databaseUrlFor(config, 'sweeper'),
    intervalMs: config.AWOOOP_CHANNELS_INTERVAL_MS,
    logger,
  });
  logger.info({ everyMs: config.AWOOOP_CHANNELS_INTERVAL_MS }, 'channels running');
  await onShutdown(logger, async () => {
    await loop.close();
    await runtime.close();
  });
  return 0;
}
