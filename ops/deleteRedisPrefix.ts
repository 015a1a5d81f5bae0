import type { Redis } from 'ioredis';

/**
 * Deletes every key under `prefix:` (SCAN + UNLINK, never FLUSHALL: the Redis may be shared).
 * Returns how many keys went.
 */
export async function deleteRedisPrefix(redis: Redis, prefix: string): Promise<number> {
  let cursor = '0';
  let deleted = 0;
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
    cursor = next;
    if (keys.length > 0) deleted += await redis.unlink(...keys);
  } while (cursor !== '0');
  return deleted;
}
