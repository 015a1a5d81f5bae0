import type { AddressInfo } from 'node:net';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readMigrations } from '../../db/migrate.ts';
import { createApp } from '../../ingress/createApp.ts';
import { createLogger } from '../../ops/createLogger.ts';
import { createAccountLookup } from '../../ingress/createAccountLookup.ts';
import { createContractReader } from '../../pipeline/runs/createContractReader.ts';
import { BUILTIN_CHANNEL_PLUGINS } from '../../pipeline/channels/builtinChannelPlugins.ts';
import { createChannelRegistry } from '../../pipeline/channels/registry.ts';
import { createSecretResolver } from '../../pipeline/secrets/createSecretResolver.ts';
import { createStageQueues } from '../../workers/stageQueues.ts';
import { useRedisPrefix } from '../helpers/useRedisPrefix.ts';
import { useTestDatabase } from '../helpers/testDatabase.ts';

const db = useTestDatabase();
const prefix = useRedisPrefix();
const logger = createLogger({ level: 'silent' });
let redis: Redis;
let base: string;
let close: () => Promise<void>;

async function serve(codeMigration: number, redisClient: Redis) {
  const pool = db().pool;
  const queues = createStageQueues(redisClient, prefix);
  const contracts = createContractReader();
  const server = createApp({
    pool,
    redis: redisClient,
    redisPrefix: prefix,
    codeMigration,
    logger,
    enqueue: queues.enqueue,
    accounts: createAccountLookup({ pool, contracts }),
    secrets: createSecretResolver({ pool, key: null }),
    channels: createChannelRegistry(BUILTIN_CHANNEL_PLUGINS),
    contracts,
    queues: queues.queues,
  }).listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: async () => {
      await new Promise<void>((r) => server.close(() => r()));
      await queues.close();
    },
  };
}

beforeAll(async () => {
  redis = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', { lazyConnect: true });
  await redis.connect();
  const s = await serve((await readMigrations()).at(-1)!.version, redis);
  base = s.url;
  close = s.close;
});
afterAll(async () => {
  await close();
  redis.disconnect();
});

describe('web', () => {
  it('answers /healthz and /readyz when Postgres, Redis and migrations are in order', async () => {
    expect(await (await fetch(`${base}/healthz`)).json()).toEqual({ status: 'ok' });
    const ready = await fetch(`${base}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({
      status: 'ready',
      checks: { postgres: 'ok', migrations: 'ok', redis: 'ok' },
    });
  });

  it('is not ready when the code knows a migration the database lacks, or Redis is gone', async () => {
    const deadRedis = new Redis('redis://127.0.0.1:1', {
      lazyConnect: true,
      maxRetriesPerRequest: 0,
      enableOfflineQueue: false,
    });
    deadRedis.on('error', () => {});
    const s = await serve(999, deadRedis);
    try {
      const res = await fetch(`${s.url}/readyz`);
      expect(res.status).toBe(503);
      const body = (await res.json()) as { status: string; checks: Record<string, string> };
      expect(body.status).toBe('not_ready');
      expect(body.checks.migrations).toMatch(/^database at \d+, code at 999$/);
      expect(body.checks.redis).toMatch(/^unreachable/);
    } finally {
      await s.close();
      deadRedis.disconnect();
    }
  });

  it('answers an unknown route with the error shape', async () => {
    const res = await fetch(`${base}/nope`);
    expect(res.status).toBe(404);
    expect(await res.json()).toEqual({
      error: { code: 'NOT_FOUND', message: 'no route for GET /nope' },
    });
  });
});
