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
