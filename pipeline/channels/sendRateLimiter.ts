import type { Redis } from 'ioredis';
import { RetryAfterError } from '../errors.ts';

/** One pacing bucket: sends in it are spaced at least `intervalMs` apart. */
export type SendBucket = { bucket: string; intervalMs: number };

// KEYS[1] the bucket; ARGV[1] interval ms, ARGV[2] max wait ms (-1: none).
// Time is Redis's own, so workers with skewed clocks still share one schedule.
const RESERVE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local stored = tonumber(redis.call('GET', KEYS[1]) or '0')
local nextAt = math.max(now, stored)
local wait = nextAt - now
if tonumber(ARGV[2]) >= 0 and wait > tonumber(ARGV[2]) then
  return wait
end
redis.call('SET', KEYS[1], nextAt + interval, 'PX', nextAt + interval - now)
return wait
`;

/**
 * Reserves the next send slot in a bucket and returns how many ms the caller must wait
 * before sending (0: now). Atomic across workers (one Lua script): the slot is
 * `max(now, stored)`, and the bucket then holds slot + interval, expiring when that passes.
 * With `maxWaitMs`, a wait longer than that reserves nothing and is only reported, so a
 * caller that gives up and retries later does not push the chat's schedule further out.
 */
export async function reserveSendSlot(
  redis: Redis,
  prefix: string,
  { bucket, intervalMs, maxWaitMs }: SendBucket & { maxWaitMs?: number },
): Promise<number> {
  const interval = Math.max(1, Math.ceil(intervalMs));
  const wait = await redis.eval(
    RESERVE,
    1,
    `${prefix}:pace:${bucket}`,
    interval,
    maxWaitMs === undefined ? -1 : Math.max(0, Math.floor(maxWaitMs)),
  );
  return Number(wait);
}

/** Telegram's published limits: about one message a second in a chat... */
const TELEGRAM_CHAT_INTERVAL_MS = 1000;
/** ...twenty a minute in a group... */
const TELEGRAM_GROUP_INTERVAL_MS = 3000;
/** ...and about thirty a second for the whole bot. */
const TELEGRAM_BOT_INTERVAL_MS = 34;

/**
 * The buckets one Telegram send must reserve a slot in: the chat (1 s apart, 3 s in a
 * group) and the bot account as a whole (34 ms apart). Reserve in each and wait the longest.
 * `accountId` must name one bot across all tenants (qualify it with the project id), or two
 * tenants' bots would share, and slow, each other's buckets.
 */
export function telegramSendBuckets(
  accountId: string,
  chatId: string,
  isGroup: boolean,
): SendBucket[] {
  return [
    {
      bucket: `telegram:${accountId}:chat:${chatId}`,
      intervalMs: isGroup ? TELEGRAM_GROUP_INTERVAL_MS : TELEGRAM_CHAT_INTERVAL_MS,
    },
    { bucket: `telegram:${accountId}:bot`, intervalMs: TELEGRAM_BOT_INTERVAL_MS },
  ];
}

/**
 * Waits in-process up to this long for a send slot; longer waits go back to the queue. Above a
 * Telegram group's 3 s spacing, so a group's next message waits here rather than re-queueing.
 */
export const MAX_INLINE_WAIT_MS = 3500;

/**
 * Keeps one Telegram bot account of one project inside its published limits per chat, per
 * group and overall: every send through that account (answers and approval notices alike)
 * reserves in the same buckets. A wait longer than {@link MAX_INLINE_WAIT_MS} reserves nothing
 * (so giving up does not push the chat's schedule further out) and is thrown as a
 * `RetryAfterError`, which delays the job without spending an attempt.
 */
export async function paceTelegramSend(
  redis: Redis,
  prefix: string,
  to: { projectId: string; accountId: string; chatId: string; isGroup: boolean },
): Promise<void> {
  let wait = 0;
  for (const bucket of telegramSendBuckets(
    `${to.projectId}/${to.accountId}`,
    to.chatId,
    to.isGroup,
  )) {
    wait = Math.max(
      wait,
      await reserveSendSlot(redis, prefix, { ...bucket, maxWaitMs: MAX_INLINE_WAIT_MS }),
    );
  }
  if (wait > MAX_INLINE_WAIT_MS) {
    throw new RetryAfterError('CHANNEL_PACING', 'waiting for a send slot in this chat', wait);
  }
  if (wait > 0) await new Promise((r) => setTimeout(r, wait));
}
