import { Redis, type RedisOptions } from 'ioredis';
import { createDbPool } from '../db/createDbPool.ts';
import type { Login } from '../db/loginUrl.ts';
import type { Logger } from '../ops/createLogger.ts';
import { createProviderHealth } from '../pipeline/providerHealth/createProviderHealth.ts';
import { BUILTIN_CHANNEL_PLUGINS } from '../pipeline/channels/builtinChannelPlugins.ts';
import { createChannelRegistry } from '../pipeline/channels/registry.ts';
import { createBulkheads } from '../pipeline/bulkheads/createBulkheads.ts';
import { createMcpGateway } from '../pipeline/mcp/createMcpGateway.ts';
import { createContractReader } from '../pipeline/runs/createContractReader.ts';
import { createSecretResolver } from '../pipeline/secrets/createSecretResolver.ts';
import type { StageContext } from '../pipeline/StageContext.ts';
import { createStageQueues, type StageQueues } from '../workers/stageQueues.ts';
import { databaseUrlFor, secretKeyBytes, type Config } from './loadConfig.ts';

/**
 * Redis options of a process that must answer while Redis is away (`web`): a command fails at
 * once when disconnected instead of queueing until Redis returns, and within `commandTimeout`
 * when Redis stops answering. What it could not enqueue, the sweeper enqueues from Postgres.
 */
export const FAIL_FAST_REDIS: RedisOptions = {
  enableOfflineQueue: false,
  maxRetriesPerRequest: 1,
  commandTimeout: 5000,
};
/** How long the `web` process waits for Redis to take a stage job before answering anyway. */
export const ENQUEUE_TIMEOUT_MS = 2000;

/** A process's clients: the stage context, the stage queues, and how to close them all. */
export type Runtime = {
  ctx: StageContext;
  queues: StageQueues;
  close(): Promise<void>;
};

/**
 * Builds the clients every pipeline process shares — Postgres pool, one Redis connection
 * (a worker's BullMQ needs `maxRetriesPerRequest: null`), the stage queues, the secret resolver
 * and the contract cache — once, at start. With `failFast` (the web process) Redis is
 * {@link FAIL_FAST_REDIS} and an enqueue is bounded by {@link ENQUEUE_TIMEOUT_MS}. The pool
 * connects as the process's login role (`app` for web and workers, `sweeper` for the
 * sweeper), never as the owner, so SQL on it cannot leave row-level security.
 */
export async function createRuntime(
  config: Config,
  {
    logger,
    actor,
    maxPoolSize = 10,
    failFast = false,
    login = 'app',
  }: {
    logger: Logger;
    actor: string;
    maxPoolSize?: number;
    failFast?: boolean;
    /** @defaultValue 'app' */
    login?: Exclude<Login, 'platform'>;
  },
): Promise<Runtime> {
  const pool = await createDbPool(databaseUrlFor(config, login), {
    applicationName: `awooop-${actor.replace(/\W+/g, '-')}`,
    maxPoolSize,
  });
  const redis = new Redis(
    config.REDIS_URL,
    failFast ? FAIL_FAST_REDIS : { maxRetriesPerRequest: null },
  );
  redis.on('error', (error) => logger.warn({ err: error.message }, 'redis connection error'));
  const queues = createStageQueues(redis, config.AWOOOP_REDIS_PREFIX, {
    ...(failFast ? { addTimeoutMs: ENQUEUE_TIMEOUT_MS } : {}),
    // The connection's own listener above has logged it already.
    onError: () => {},
  });
  const secrets = createSecretResolver({
    pool,
    key: secretKeyBytes(config),
    envAllowed: config.AWOOOP_ENV_SECRETS,
  });
  const base = {
    pool,
    logger,
    redis,
    redisPrefix: config.AWOOOP_REDIS_PREFIX,
    actor,
    now: Date.now,
  };
  const ctx: StageContext = {
    ...base,
    secrets,
    channels: createChannelRegistry(BUILTIN_CHANNEL_PLUGINS),
    contracts: createContractReader(),
    gateway: createMcpGateway({ secrets, logger }),
    bulkheads: createBulkheads(redis, config.AWOOOP_REDIS_PREFIX, {
      projectSlots: config.AWOOOP_BULKHEAD_PROJECT_SLOTS,
      dependencySlots: config.AWOOOP_BULKHEAD_DEPENDENCY_SLOTS,
      leaseMs: config.AWOOOP_BULKHEAD_LEASE_MS,
    }),
    actor,
    now: Date.now,
    providerHealth: createProviderHealth(base, {
      failures: config.AWOOOP_BREAKER_FAILURES,
      windowMs: config.AWOOOP_BREAKER_WINDOW_MS,
      cooldownMs: config.AWOOOP_BREAKER_COOLDOWN_MS,
      probes: config.AWOOOP_BREAKER_PROBES,
      registration: config.AWOOOP_PROVIDER_REGISTRATION,
    }),
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
