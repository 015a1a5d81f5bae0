import { once } from 'node:events';
import { createDbPool } from '../db/createDbPool.ts';
import { readMigrations } from '../db/migrate.ts';
import { createAccountLookup } from '../ingress/createAccountLookup.ts';
import { closeServer } from '../ingress/closeServer.ts';
import { createApp } from '../ingress/createApp.ts';
import { configuredAdmission } from './configuredAdmission.ts';
import { createLogger } from './createLogger.ts';
import { createRuntime } from './createRuntime.ts';
import { databaseUrlFor, type Config } from './loadConfig.ts';
import { createProcessMetrics, renderMetrics } from './metrics/renderMetrics.ts';
import { onShutdown } from './onShutdown.ts';

/** The `web` process: ingress, the API, bull-board and `/metrics` on HOST:PORT until SIGTERM. */
export async function runWeb(config: Config): Promise<number> {
  const logger = createLogger({ level: config.LOG_LEVEL, name: 'web' });
  // Fail fast on Redis: an answer never waits for it (see acceptInbound).
  const runtime = await createRuntime(config, {
    logger,
    actor: 'web',
    maxPoolSize: 20,
    failFast: true,
  });
  const { ctx, queues } = runtime;
  // The scrape counts rows across projects as awooop_sweeper, which the web's own login
  // cannot become: it gets a one-connection pool of the sweeper's login.
  // The web process's own CPU, memory and event loop, beside the platform's series.
  const processMetrics = createProcessMetrics();
  const metricsPool = await createDbPool(databaseUrlFor(config, 'sweeper'), {
    applicationName: 'awooop-web-metrics',
    maxPoolSize: 1,
  });
  const codeMigration = (await readMigrations()).at(-1)?.version ?? 0;
  const app = createApp({
    pool: ctx.pool,
    redis: ctx.redis,
    redisPrefix: config.AWOOOP_REDIS_PREFIX,
    codeMigration,
    logger,
    enqueue: queues.enqueue,
    admission: configuredAdmission(config, ctx),
    accounts: createAccountLookup({ pool: ctx.pool, contracts: ctx.contracts }),
    secrets: ctx.secrets,
    channels: ctx.channels,
    contracts: ctx.contracts,
    // The agents' MCP endpoints; runtime.close() closes it after the server has stopped.
    gateway: ctx.gateway,
    queues: queues.queues,
    adminToken: config.AWOOOP_ADMIN_TOKEN,
    viewerToken: config.AWOOOP_VIEWER_TOKEN,
    credentialLimits: {
      prefix: config.AWOOOP_REDIS_PREFIX,
      perSource: config.AWOOOP_AUTH_FAILURES_PER_SOURCE,
      perProject: config.AWOOOP_AUTH_FAILURES_PER_PROJECT,
      windowSeconds: config.AWOOOP_AUTH_FAILURE_WINDOW_S,
    },
    metricsToken: config.AWOOOP_METRICS_TOKEN,
    metrics: () =>
      renderMetrics({
        pool: metricsPool,
        redis: ctx.redis,
        prefix: config.AWOOOP_REDIS_PREFIX,
        queues: queues.queues,
        processMetrics,
      }),
  });
  const server = app.listen(config.PORT, config.HOST);
  await once(server, 'listening');
  const shown = config.HOST.includes(':') ? `[${config.HOST}]` : config.HOST;
  logger.info(
    { host: config.HOST, port: config.PORT, config },
    `web listening on http://${shown}:${config.PORT}`,
  );
  await onShutdown(logger, async () => {
    // Stop taking requests; those in flight finish (their writes are already durable or not
    // begun) within the grace; open event streams end at once.
    await closeServer(server, app, { graceMs: 5000 });
    await runtime.close();
    await metricsPool.end();
  });
  return 0;
}
