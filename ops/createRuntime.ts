import { Redis } from 'ioredis';
import { createDbPool } from '../db/createDbPool.ts';
import type { Logger } from '../ops/createLogger.ts';
import { createMcpGateway } from '../pipeline/mcp/createMcpGateway.ts';
import { createContractReader } from '../pipeline/runs/createContractReader.ts';
import { createSecretResolver } from '../pipeline/secrets/createSecretResolver.ts';
import type { StageContext } from '../pipeline/stages/StageContext.ts';
import { createStageQueues, type StageQueues } from '../workers/stageQueues.ts';
import { secretKeyBytes, type Config } from './loadConfig.ts';

/** A process's clients: the stage context, the stage queues, and how to close them all. */
export type Runtime = {
  ctx: StageContext;
  queues: StageQueues;
  close(): Promise<void>;
};

/**
 * Builds the clients every pipeline process shares — Postgres pool, one Redis connection
 * (BullMQ needs `maxRetriesPerRequest: null`), the stage queues, the secret resolver and the
 * contract cache — once, at start.
 */
export async function createRuntime(
  config: Config,
  { logger, actor, maxPoolSize = 10 }: { logger: Logger; actor: string; maxPoolSize?: number },
): Promise<Runtime> {
  const pool = await createDbPool(config.DATABASE_URL, {
    applicationName: `awooop-${actor.replace(/\W+/g, '-')}`,
    maxPoolSize,
  });
  const redis = new Redis(config.REDIS_URL, { maxRetriesPerRequest: null });
  redis.on('error', (error) => logger.warn({ err: error.message }, 'redis connection error'));
  const queues = createStageQueues(redis, config.AWOOOP_REDIS_PREFIX);
  const secrets = createSecretResolver({
    pool,
    key: secretKeyBytes(config),
    envAllowed: config.AWOOOP_ENV_SECRETS,
  });
  const ctx: StageContext = {
    pool,
    logger,
    redis,
    redisPrefix: config.AWOOOP_REDIS_PREFIX,
    secrets,
    contracts: createContractReader(),
    gateway: createMcpGateway({ secrets, logger }),
    actor,
    now: Date.now,
  };
  return {
    ctx,
    queues,
    async close() {
      await ctx.gateway.close();
      await queues.close();
      redis.disconnect();
      await pool.end();
    },
  };
}
