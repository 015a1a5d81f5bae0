import { Redis } from 'ioredis';
import { AppError } from '../../pipeline/errors.ts';
import { redactUrl } from '../loadConfig.ts';
import type { CliContext } from './CliContext.ts';

/**
 * A Redis connection for one CLI command, connected before it returns: a CLI should fail
 * fast, not wait forever, when Redis is down (`REDIS_UNAVAILABLE`, the URL without its
 * password). The caller disconnects it.
 */
export async function connectCliRedis(ctx: CliContext): Promise<Redis> {
  const redis = new Redis(ctx.config.REDIS_URL, {
    maxRetriesPerRequest: 1,
    enableOfflineQueue: false,
    connectTimeout: 5000,
    retryStrategy: () => null,
    lazyConnect: true,
  });
  redis.on('error', () => {});
  await redis.connect().catch((error: unknown) => {
    throw new AppError(
      'REDIS_UNAVAILABLE',
      `cannot reach Redis at ${redactUrl(ctx.config.REDIS_URL)}: ${error instanceof Error ? error.message : String(error)}`,
    );
  });
  return redis;
}
