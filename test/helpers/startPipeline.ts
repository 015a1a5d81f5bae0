import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import type { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { pino, type Logger } from 'pino';
import type { DatabasePool } from 'slonik';
import { putSecret } from '../../db/secrets.ts';
import { sealSecret, secretAad } from '../../pipeline/secrets/secretBox.ts';
import { createApiKey, type ApiKeyRole } from '../../db/apiKeys.ts';
import { readMigrations } from '../../db/migrate.ts';
import { withProject } from '../../db/withProject.ts';
import { createAccountLookup } from '../../ingress/createAccountLookup.ts';
import { createAdmission, type AdmissionBounds } from '../../pipeline/admission/createAdmission.ts';
import { createApp, type AppDeps } from '../../ingress/createApp.ts';
import { ENQUEUE_TIMEOUT_MS, FAIL_FAST_REDIS } from '../../ops/createRuntime.ts';
import { STAGE_HANDLERS } from '../../ops/runWorker.ts';
import { Stage } from '../../pipeline/contracts/runJob.ts';
import {
  createProviderHealth,
  type ProviderHealthOptions,
} from '../../pipeline/providerHealth/createProviderHealth.ts';
import { BUILTIN_CHANNEL_PLUGINS } from '../../pipeline/channels/builtinChannelPlugins.ts';
import type { AnyChannelPlugin } from '../../pipeline/channels/ChannelPlugin.ts';
import { createChannelRegistry } from '../../pipeline/channels/registry.ts';
import {
  createBulkheads,
  DEFAULT_BULKHEAD_LIMITS,
  type BulkheadLimits,
} from '../../pipeline/bulkheads/createBulkheads.ts';
import { createMcpGateway } from '../../pipeline/mcp/createMcpGateway.ts';
import { createContractReader } from '../../pipeline/runs/createContractReader.ts';
import { stageJobId } from '../../pipeline/contracts/runState.ts';
import { createSecretResolver } from '../../pipeline/secrets/createSecretResolver.ts';
import type { StageContext } from '../../pipeline/StageContext.ts';
import { sweep, type SweepReport } from '../../pipeline/sweeper/sweep.ts';
import { createStageWorker } from '../../workers/createStageWorker.ts';
import { createStageQueues, type StageQueues } from '../../workers/stageQueues.ts';
import { trackOpen } from './trackOpen.ts';
import { TEST_REDIS_URL } from './useRedisPrefix.ts';

/** The whole pipeline in this test process: ingress on a local port and a worker per stage. */
export type Pipeline = {
  url: string;
  /** The ingress app's Koa middleware, its routers' dispatchers among them (`.router`). */
  middleware: readonly unknown[];
  ctx: StageContext;
  queues: StageQueues;
  secretKey: Buffer;
  /** Starts the workers of `stages` (all by default); the harness starts them all at first. */
  startWorkers(stages?: readonly Stage[]): void;
  /** Closes the running workers (their jobs stay in Redis). */
  stopWorkers(): Promise<void>;
  /** One sweep with the given stall time (and page size), on the sweeper's pool. */
  sweep(stallMs?: number, limit?: number): Promise<SweepReport>;
  setSecret(projectId: string, name: string, value: string): Promise<void>;
  createKey(projectId: string, roles?: Exclude<ApiKeyRole, 'mcp'>[]): Promise<string>;
  close(): Promise<void>;
};

/**
 * Starts ingress and the five stage workers against this file's database and Redis prefix,
 * as `web` and `worker all` would, with test-sized pools and concurrency.
 */
export async function startPipeline({
  pool,
  sweeperPool,
  prefix,
  workers: startAtOnce = true,
  concurrency = 8,
  logger = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' }),
  app: appOptions = {},
  envSecrets = [],
  redisUrl = TEST_REDIS_URL,
  failFastIngress = false,
  databaseWaitMs,
  channels = BUILTIN_CHANNEL_PLUGINS,
  admission,
  bulkheads = {},
  providerHealth,
  now = Date.now,
}: {
  pool: DatabasePool;
  /** The sweeper's login (`db().sweeperPool`); needed only by `sweep()`. */
  sweeperPool?: DatabasePool;
  prefix: string;
  workers?: boolean;
  concurrency?: number;
  /** Where every connection goes (a proxy in front of the test Redis, say). */
  redisUrl?: string;
  /**
   * Ingress gets its own connection and queues, set up as the `web` process's are (fail fast,
   * bounded enqueue); without it, ingress shares the workers' connection.
   */
  failFastIngress?: boolean;
  /** How long a stage job waits out an unreachable database (the workers' default if unset). */
  databaseWaitMs?: number;
  /** Where the pipeline logs (silent unless TEST_LOG_LEVEL is set). */
  logger?: Logger;
  /** Ingress options `web` takes from its config (the dashboard's tokens, credential limits). */
  app?: Pick<AppDeps, 'adminToken' | 'viewerToken' | 'credentialLimits' | 'metrics'>;
  /** The env variables `env:` refs may read (AWOOOP_ENV_SECRETS). @defaultValue none */
  envSecrets?: readonly string[];
  /** The channel plugins registered (a test adds a fake one). @defaultValue the built-in ones */
  channels?: readonly AnyChannelPlugin[];
  /**
   * Admission at ingress with these bounds (limits read from the contracts, not cached);
   * absent: none, as in most tests.
   */
  admission?: AdmissionBounds;
  /** Share sizes (the platform's defaults for what is unset). */
  bulkheads?: Partial<BulkheadLimits>;
  /** The provider breakers' settings; without it the model route runs with no breaker. */
  providerHealth?: Partial<ProviderHealthOptions>;
  /** The stages' clock (`ctx.now`), read on every call. @defaultValue Date.now */
  now?: () => number;
}): Promise<Pipeline> {
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: null });
  const ingressRedis = failFastIngress ? new Redis(redisUrl, FAIL_FAST_REDIS) : redis;
  // A test that cuts Redis sees these; the pipeline's own handling is what it asserts.
  for (const r of new Set([redis, ingressRedis])) r.on('error', () => {});
  const secretKey = randomBytes(32);
  const quiet = () => {};
  const queues = createStageQueues(redis, prefix, { onError: quiet });
  const ingressQueues = failFastIngress
    ? createStageQueues(ingressRedis, prefix, { addTimeoutMs: ENQUEUE_TIMEOUT_MS, onError: quiet })
    : queues;
  const secrets = createSecretResolver({ pool, key: secretKey, ttlMs: 0, envAllowed: envSecrets });
  const ctx: StageContext = {
    pool,
    logger,
    redis,
    redisPrefix: prefix,
    secrets,
    channels: createChannelRegistry(channels),
    contracts: createContractReader(),
    gateway: createMcpGateway({ secrets, logger }),
    bulkheads: createBulkheads(redis, prefix, { ...DEFAULT_BULKHEAD_LIMITS, ...bulkheads }),
    actor: 'worker:test',
    now: () => now(),
  };
  if (providerHealth) ctx.providerHealth = createProviderHealth(ctx, providerHealth);
  const app = createApp({
    pool,
    ...(admission
      ? {
          admission: createAdmission({
            redis: ingressRedis,
            prefix,
            pool,
            contracts: ctx.contracts,
            logger,
            bounds: admission,
            ttlMs: 0,
          }),
        }
      : {}),
    redis: ingressRedis,
    redisPrefix: prefix,
    logger,
    codeMigration: (await readMigrations()).at(-1)?.version ?? 0,
    enqueue: ingressQueues.enqueue,
    accounts: createAccountLookup({ pool, contracts: ctx.contracts, ttlMs: 0 }),
    secrets: ctx.secrets,
    channels: ctx.channels,
    contracts: ctx.contracts,
    gateway: ctx.gateway,
    queues: ingressQueues.queues,
    ...appOptions,
  });
  const server: Server = app.listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  // What the file must close (pipeline.close() does): failOnLeaks fails it otherwise.
  const name = `startPipeline ${prefix}`;
  let closed = false;
  trackOpen({ what: name, isOpen: () => !closed, forceClose: () => ctx.gateway.close() });
  trackOpen({
    what: `${name}: its HTTP server`,
    isOpen: () => server.listening,
    forceClose: () => {
      server.closeAllConnections();
      server.close();
    },
  });
  for (const [i, r] of [...new Set([redis, ingressRedis])].entries()) {
    trackOpen({
      what: `${name}: its Redis connection ${i + 1}`,
      isOpen: () => r.status !== 'end',
      forceClose: () => r.disconnect(),
    });
  }
  const trackQueues = (of: Record<Stage, Queue>, whose: string) => {
    for (const [stage, queue] of Object.entries(of)) {
      trackOpen({
        what: `${name}: ${whose} ${stage} queue`,
        isOpen: () => queue.closing === undefined,
        forceClose: () => queue.close(),
      });
    }
  };
  trackQueues(queues.queues, 'its');
  if (ingressQueues !== queues) trackQueues(ingressQueues.queues, "ingress's");

  let running: Worker[] = [];
  const startWorkers = (stages: readonly Stage[] = Stage.options) => {
    for (const stage of stages) {
      const worker = createStageWorker({
        stage,
        handler: STAGE_HANDLERS[stage],
        ctx: { ...ctx, actor: `worker:${stage}` },
        enqueue: queues.enqueue,
        connection: redis,
        prefix,
        concurrency,
        lockMs: 2000,
        ...(databaseWaitMs === undefined ? {} : { databaseWaitMs }),
      });
      let workerClosed = false;
      worker.once('closed', () => (workerClosed = true));
      trackOpen({
        what: `${name}: its ${stage} worker`,
        isOpen: () => !workerClosed,
        forceClose: () => worker.close(true),
      });
      running.push(worker);
    }
  };
  const stopWorkers = async () => {
    const closing = running;
    running = [];
    await Promise.all(closing.map((w) => w.close()));
  };
  if (startAtOnce) startWorkers();

  return {
    url,
    middleware: app.middleware,
    ctx,
    queues,
    secretKey,
    startWorkers,
    stopWorkers,
    sweep: (stallMs = 0, limit?: number) => {
      if (!sweeperPool) throw new Error('startPipeline: pass sweeperPool to sweep');
      return sweep(
        { ...ctx, pool: sweeperPool },
        {
          ...(limit ? { limit } : {}),
          jobState: (stage, runId, notice) =>
            queues.queues[stage].getJobState(stageJobId(stage, runId, notice)),
          enqueue: queues.enqueue,
          stallMs,
        },
      );
    },
    setSecret: (projectId, name, value) =>
      withProject(pool, projectId, (tx) =>
        putSecret(tx, {
          projectId,
          name,
          sealed: sealSecret(secretKey, value, secretAad(projectId, name)),
          actor: 'test',
        }),
      ),
    createKey: async (projectId, roles = ['client']) =>
      (
        await withProject(pool, projectId, (tx) =>
          createApiKey(tx, { projectId, name: 'test', roles, actor: 'test' }),
        )
      ).key,
    async close() {
      await stopWorkers();
      await new Promise<void>((r) => server.close(() => r()));
      await queues.close();
      if (ingressQueues !== queues) await ingressQueues.close();
      await ctx.gateway.close();
      redis.disconnect();
      ingressRedis.disconnect();
      closed = true;
    },
  };
}
