import { once } from 'node:events';
import { Redis } from 'ioredis';
import { createDbPool } from '../db/createDbPool.ts';
import { readMigrations } from '../db/migrate.ts';
import { createApp } from '../ingress/createApp.ts';
import { createLogger } from './createLogger.ts';
import type { Config } from './loadConfig.ts';
import { onShutdown } from './onShutdown.ts';

/** The `web` process: the HTTP edge on PORT until SIGTERM. */
export async function runWeb(config: Config): Promise<number> {
  const logger = createLogger({ level: config.LOG_LEVEL, name: 'web' });
  const pool = await createDbPool(config.DATABASE_URL, { applicationName: 'awooop-web' });
  const redis = new Redis(config.REDIS_URL, { lazyConnect: false, maxRetriesPerRequest: 2 });
  redis.on('error', (error) => logger.warn({ err: error }, 'redis connection error'));
  const codeMigration = (await readMigrations()).at(-1)?.version ?? 0;
  const app = createApp({ pool, redis, codeMigration, logger });
  const server = app.listen(config.PORT, '0.0.0.0');
  await once(server, 'listening');
  logger.info({ port: config.PORT, config }, `web listening on http://localhost:${config.PORT}`);
  await onShutdown(logger, async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
    redis.disconnect();
    await pool.end();
  });
  return 0;
}
