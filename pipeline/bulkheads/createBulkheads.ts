import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { RetryAfterError } from '../errors.ts';

/** The platform's share sizes: how many jobs may hold one share at once, across all workers. */
export type BulkheadLimits = {
  /** Jobs of one project a stage runs at once (every worker of the stage together). */
  projectSlots: number;
  /**
   * Jobs calling one outside dependency of a project at once: one MCP server, one channel
   * account's API, one model endpoint. A contract may choose its own for an MCP server.
   */
  dependencySlots: number;
  /**
   * How long a place stays held without renewal (renewed at a third of it while held): a
   * worker that dies holding one frees it after this long.
   */
  leaseMs: number;
};

/** Platform defaults (see `ops/loadConfig.ts` for the variables that change them). */
export const DEFAULT_BULKHEAD_LIMITS: BulkheadLimits = {
  projectSlots: 8,
  dependencySlots: 4,
  leaseMs: 30_000,
};

/** One place held in a share; released once, however often `release` is called. */
export type BulkheadLease = { release(): Promise<void> };

/** Shares of concurrency in Redis: each a counted set of leases that expire. */
export type Bulkheads = {
  limits: BulkheadLimits;
  /** A place in share `key` when fewer than `limit` are held, else null. */
  tryAcquire(key: string, limit: number): Promise<BulkheadLease | null>;
  /**
   * A place in share `key`; when the share is full, throws a {@link RetryAfterError}
   * `BULKHEAD_FULL` that spends no attempt (the stage shell delays the job, which then holds
   * no worker slot).
   */
  enter(key: string, limit: number): Promise<BulkheadLease>;
  /**
   * Runs `fn` holding a place in share `key`; when the share is full, throws a
   * {@link RetryAfterError} `BULKHEAD_FULL` that spends no attempt, before `fn` runs.
   */
  hold<T>(key: string, limit: number, fn: () => Promise<T>): Promise<T>;
};

/** How long a job that found its share full waits first; the stage shell grows it. */
export const BULKHEAD_WAIT_MS = 200;

// A share is a sorted set of lease ids scored by expiry (Redis' own clock, so workers'
// clocks need not agree): expired leases are removed before counting, so a dead worker's
// place comes back by itself. One script call to take a place, one ZREM to give it back.
const ACQUIRE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 2)
return 1`;
const RENEW = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if redis.call('ZADD', KEYS[1], 'XX', 'CH', now + tonumber(ARGV[1]), ARGV[2]) == 1 then
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]) * 2)
end
return 1`;

/**
 * Bulkheads over one Redis connection, keys under `<prefix>:bulkhead:`. A share is named by
 * what it protects (`stage:execute:project:P`, `mcp:P:server`, `channel:P:account`), so a
 * share that is stuck — its holders waiting on a hung peer — makes only its own jobs wait.
 * Taking a place is one script call; a held place is renewed while its holder lives.
 */
export function createBulkheads(
  redis: Redis,
  prefix: string,
  limits: BulkheadLimits = DEFAULT_BULKHEAD_LIMITS,
): Bulkheads {
  const keyOf = (key: string) => `${prefix}:bulkhead:${key}`;
  const tryAcquire = async (key: string, limit: number): Promise<BulkheadLease | null> => {
    const redisKey = keyOf(key);
    const id = randomUUID();
    const got = await redis.eval(ACQUIRE, 1, redisKey, limit, limits.leaseMs, id);
    if (got !== 1) return null;
    const renew = setInterval(
      () => void redis.eval(RENEW, 1, redisKey, limits.leaseMs, id).catch(() => {}),
      Math.max(100, Math.floor(limits.leaseMs / 3)),
    );
    renew.unref();
    let released: Promise<void> | undefined;
    return {
      release: () =>
        (released ??= (async () => {
          clearInterval(renew);
          // A lost release is a place held until its lease runs out, never a place lost.
          await redis.zrem(redisKey, id).then(
            () => {},
            () => {},
          );
        })()),
    };
  };
  const enter = async (key: string, limit: number): Promise<BulkheadLease> => {
    const lease = await tryAcquire(key, limit);
    if (lease) return lease;
    throw new RetryAfterError('BULKHEAD_FULL', `share ${key} is full`, BULKHEAD_WAIT_MS, {
      detail: { share: key.split(':')[0] },
    });
  };
  return {
    limits,
    tryAcquire,
    enter,
    async hold(key, limit, fn) {
      const lease = await enter(key, limit);
      try {
        return await fn();
      } finally {
        await lease.release();
      }
    },
  };
}
