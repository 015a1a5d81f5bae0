import { Redis } from 'ioredis';
import { afterAll } from 'vitest';
import { deleteRedisPrefix } from '../../ops/deleteRedisPrefix.ts';

/** The Redis tests use: `REDIS_URL`, or the local default. */
export const TEST_REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

/**
 * A key prefix of this test file's own (so files never see each other's queues or counters),
 * with every key under it deleted after the file's tests.
 */
export function useRedisPrefix(name = 'awt'): string {
  const prefix = `${name}${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`;
  afterAll(async () => {
    await deleteKeys(prefix);
  });
  return prefix;
}

/** Deletes every key under `prefix:`. */
export async function deleteKeys(prefix: string): Promise<void> {
  const redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null });
  try {
    await deleteRedisPrefix(redis, prefix);
  } finally {
    redis.disconnect();
  }
}

/**
 * Deletes every key under `prefix:` at one instant, as a FLUSHALL or a Redis restart without
 * persistence would (a Lua script runs atomically). {@link deleteKeys} scans in pages, so
 * workers still running in between could be left half a job (a job hash without its list
 * entry, or the reverse) — a state no real outage produces, which blocks a re-add under the
 * same job id. Only for a test's own small prefix: `KEYS` walks the whole keyspace.
 */
export async function wipeKeys(prefix: string): Promise<void> {
  const redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null });
  try {
    await redis.eval(
      `local keys = redis.call('KEYS', ARGV[1])
       for i = 1, #keys, 500 do
         redis.call('UNLINK', unpack(keys, i, math.min(i + 499, #keys)))
       end
       return #keys`,
      0,
      `${prefix}:*`,
    );
  } finally {
    redis.disconnect();
  }
}
