import type { Redis } from 'ioredis';
import type { AccountKey } from './accountGate.ts';

const statsKey = (prefix: string, { projectId, accountId }: AccountKey) =>
  `${prefix}:channel-stats:${projectId}:${accountId}`;

/** What passed through an account since the last flush. */
export type ChannelStats = {
  inbound: number;
  outbound: number;
  errors: number;
  lastInboundAt: number | null;
  lastOutboundAt: number | null;
  lastError: { code: string; at: number } | null;
};

/**
 * Counts what passed through an account in Redis — one round trip (a MULTI of HINCRBY and
 * HSET), no Postgres write — for the ChannelManager to flush into the snapshot. Never throws:
 * a count lost while Redis is away is only a statistic.
 */
export async function countChannel(
  redis: Redis,
  prefix: string,
  key: AccountKey,
  what: { inbound?: number; outbound?: number; error?: string },
  now = Date.now(),
): Promise<void> {
  if (!what.inbound && !what.outbound && !what.error) return;
  const m = redis.multi();
  const k = statsKey(prefix, key);
  if (what.inbound) m.hincrby(k, 'inbound', what.inbound).hset(k, 'last_inbound', now);
  if (what.outbound) m.hincrby(k, 'outbound', what.outbound).hset(k, 'last_outbound', now);
  if (what.error)
    m.hincrby(k, 'errors', 1).hset(k, 'last_error_code', what.error, 'last_error_at', now);
  await m.exec().catch(() => null);
}

/**
 * Takes the account's counts out of Redis: read and deleted in one MULTI, so each count is
 * flushed once (a crash between this and the Postgres write loses it, never doubles it).
 */
export async function takeChannelStats(
  redis: Redis,
  prefix: string,
  key: AccountKey,
): Promise<ChannelStats | null> {
  const k = statsKey(prefix, key);
  const result = await redis.multi().hgetall(k).del(k).exec();
  const h = (result?.[0]?.[1] ?? {}) as Record<string, string>;
  if (Object.keys(h).length === 0) return null;
  const num = (v: string | undefined) => (v === undefined ? null : Number(v));
  return {
    inbound: Number(h.inbound ?? 0),
    outbound: Number(h.outbound ?? 0),
    errors: Number(h.errors ?? 0),
    lastInboundAt: num(h.last_inbound),
    lastOutboundAt: num(h.last_outbound),
    lastError:
      h.last_error_code && h.last_error_at
        ? { code: h.last_error_code, at: Number(h.last_error_at) }
        : null,
  };
}
