// A baseline process: the bare ingress and/or hops of the bare chain, against the bench's
// database and Redis prefix (from the same whitelisted env the platform reads). Until SIGTERM.
import { once } from 'node:events';
import { parseArgs } from 'node:util';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import pg from 'pg';
import { pino } from 'pino';
import { loadConfig } from '../loadConfig.ts';
import { onShutdown } from '../onShutdown.ts';
import { createBareIngress } from './bareIngress.ts';
import { HOPS, hopQueueName, startBaselineHops } from './baselineHops.ts';

const { values } = parseArgs({
  options: {
    hops: { type: 'string', default: 'all' },
    write: { type: 'string', default: 'cte' },
    ingress: { type: 'boolean', default: false },
  },
});
const hops: number[] =
  values.hops === 'all'
    ? [...HOPS]
    : values.hops === 'none'
      ? []
      : values.hops.split(',').map((h) => Number(h));
if (hops.some((h) => !HOPS.includes(h as never)))
  throw new Error(`--hops: bad value ${values.hops}`);
if (values.write !== 'cte' && values.write !== 'tx') throw new Error('--write: cte or tx');

const config = loadConfig();
const logger = pino({ level: config.LOG_LEVEL, name: 'baseline' });
const concurrency = config.AWOOOP_WORKER_CONCURRENCY;
const pool = new pg.Pool({
  connectionString: config.DATABASE_URL,
  max: (hops.length > 0 ? Math.min(20, concurrency + 2) : 0) + (values.ingress ? 20 : 0),
  application_name: 'awooop-bench-baseline',
});
const redis = new Redis(config.REDIS_URL, { maxRetriesPerRequest: null });
const prefix = config.AWOOOP_REDIS_PREFIX;
const chain = startBaselineHops({
  hops,
  pool,
  connection: redis,
  prefix,
  concurrency,
  write: values.write,
});
const first = new Queue(hopQueueName(1), { connection: redis, prefix });
const server = values.ingress
  ? createBareIngress({ pool, queue: first }).listen(config.PORT, '127.0.0.1')
  : null;
if (server) await once(server, 'listening');
logger.info({ hops, ingress: values.ingress, concurrency }, 'baseline ready');

await onShutdown(logger, async () => {
  if (server) await new Promise((resolve) => server.close(resolve));
  await chain.close();
  await first.close();
  redis.disconnect();
  await pool.end();
});
