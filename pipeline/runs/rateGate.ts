import type { Redis } from 'ioredis';

/**
 * Counts a run against a per-minute window and says whether it fits under `limit`. The window
 * is a sorted set of run ids in arrival order and a run is admitted when its rank is below the
 * limit, so asking again for the same run (a retried policy stage) gives the same answer.
 * Keys expire two minutes after their window.
 */
export async function admitToWindow(
  redis: Redis,
  { key, runId, limit, now }: { key: string; runId: string; limit: number; now: number },
): Promise<{ admitted: boolean; rank: number }> {
  const setKey = `${key}:${Math.floor(now / 60_000)}`;
  const results = await redis
    .multi()
    .zadd(setKey, 'NX', now, runId)
    .zrank(setKey, runId)
    .pexpire(setKey, 120_000)
    .exec();
  const rank = Number(results?.[1]?.[1] ?? 0);
  return { admitted: rank < limit, rank };
}
