import type { Redis } from 'ioredis';

/**
 * Numbers a run within its window: the number it was given before, or the next one. One hash
 * per window, run id → arrival number, the counter under `#`; the key expires two minutes
 * after it was last touched.
 */
const NUMBER_SCRIPT = `
local n = redis.call('HGET', KEYS[1], ARGV[1])
if not n then
  n = redis.call('HINCRBY', KEYS[1], '#', 1)
  redis.call('HSET', KEYS[1], ARGV[1], n)
end
redis.call('PEXPIRE', KEYS[1], 120000)
return tonumber(n)`;

/**
 * Counts a run against a per-minute window and says whether it fits under `limit`. A run is
 * numbered in arrival order the first time it asks in a window and admitted when fewer than
 * `limit` runs came before it, so asking again for the same run (a retried policy stage)
 * gives the same answer within its minute, however many runs asked in the same millisecond;
 * `nextWindowMs` is how long until the next minute's window opens.
 */
export async function admitToWindow(
  redis: Redis,
  { key, runId, limit, now }: { key: string; runId: string; limit: number; now: number },
): Promise<{ admitted: boolean; rank: number; nextWindowMs: number }> {
  // `:n:` keeps these hashes apart from the sorted sets the gate kept before under `key:<minute>`.
  const windowKey = `${key}:n:${Math.floor(now / 60_000)}`;
  const rank = Number(await redis.eval(NUMBER_SCRIPT, 1, windowKey, runId)) - 1;
  return { admitted: rank < limit, rank, nextWindowMs: 60_000 - (now % 60_000) };
}
