import type { Redis } from 'ioredis';
import type { DatabasePool } from 'slonik';
import { readDesiredState, type DesiredState } from '../../../db/channelAccounts.ts';
import { withProject } from '../../../db/withProject.ts';
import { RetryAfterError } from '../../errors.ts';

/** How long a send of a stopped account waits before it looks again (no attempt spent). */
export const STOPPED_SEND_WAIT_MS = 30_000;
/** What a stopped account's webhook tells the channel to wait, in seconds (`Retry-After`). */
export const STOPPED_RETRY_AFTER_S = 60;
/** How long the cached flag stands before Postgres is read again. */
const FLAG_TTL_S = 5;
/** How long the flag's read may take before Postgres answers instead (Redis slow or away). */
const FLAG_READ_MS = 250;

/** What the gate reads: Postgres (the truth) and Redis (the cached flag). */
export type AccountGateDeps = { pool: DatabasePool; redis: Redis; redisPrefix: string };

/** An account of a project. */
export type AccountKey = { projectId: string; accountId: string };

const flagKey = (prefix: string, { projectId, accountId }: AccountKey) =>
  `${prefix}:channel-account:${projectId}:${accountId}:desired`;

/**
 * Whether an operator has stopped the account: one Redis GET of a flag cached for a few
 * seconds, else a read of the snapshot in Postgres (an account without one runs). The flag is
 * written by {@link publishDesiredState} right after each start or stop commits, and only set
 * here when absent, so a read that raced a stop never overwrites it with the older answer.
 * With Redis away or slow (over 250 ms), Postgres answers; the flag write is not awaited.
 */
export async function isAccountStopped(deps: AccountGateDeps, key: AccountKey): Promise<boolean> {
  const redisKey = flagKey(deps.redisPrefix, key);
  let timer: NodeJS.Timeout | undefined;
  const cached = await Promise.race([
    deps.redis.get(redisKey).catch(() => null),
    new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), FLAG_READ_MS))),
  ]).finally(() => clearTimeout(timer));
  if (cached === 'running' || cached === 'stopped') return cached === 'stopped';
  const state = await withProject(deps.pool, key.projectId, (tx) =>
    readDesiredState(tx, key.accountId),
  );
  void deps.redis.set(redisKey, state, 'EX', FLAG_TTL_S, 'NX').catch(() => null);
  return state === 'stopped';
}

/**
 * Throws a {@link RetryAfterError} (which spends no attempt) when the account is stopped, so
 * its deliveries wait, their rows still queued, until it is started again (which resumes
 * them at once) or the wait comes round.
 */
export async function assertAccountRunning(deps: AccountGateDeps, key: AccountKey): Promise<void> {
  if (await isAccountStopped(deps, key)) {
    throw new RetryAfterError(
      'CHANNEL_ACCOUNT_STOPPED',
      `channel account "${key.accountId}" is stopped; its sends wait until it is started`,
      STOPPED_SEND_WAIT_MS,
    );
  }
}

/** Writes the flag after a start or stop has committed (best effort: it expires anyway). */
export async function publishDesiredState(
  deps: Omit<AccountGateDeps, 'pool'>,
  key: AccountKey,
  state: DesiredState,
): Promise<void> {
  await deps.redis.set(flagKey(deps.redisPrefix, key), state, 'EX', FLAG_TTL_S).catch(() => null);
}
