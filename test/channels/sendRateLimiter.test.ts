import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import {
  paceTelegramSend,
  reserveSendSlot,
  telegramSendBuckets,
} from '../../pipeline/channels/sendRateLimiter.ts';
import { TEST_REDIS_URL, useRedisPrefix } from '../helpers/useRedisPrefix.ts';

const prefix = useRedisPrefix('awtpace');
const redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null });
afterAll(() => {
  redis.disconnect();
});

describe('reserveSendSlot', () => {
  it('lets the first send go now and spaces the next ones one interval apart', async () => {
    const bucket = { bucket: 'chat:a', intervalMs: 60_000 };
    const waits = [];
    for (let i = 0; i < 3; i++) waits.push(await reserveSendSlot(redis, prefix, bucket));
    expect(waits[0]).toBe(0);
    // Redis time moves on a few ms between the calls.
    expect(waits[1]).toBeGreaterThan(59_000);
    expect(waits[1]).toBeLessThanOrEqual(60_000);
    expect(waits[2]).toBeGreaterThan(119_000);
    expect(waits[2]).toBeLessThanOrEqual(120_000);
  });

  it('hands out distinct slots to concurrent callers', async () => {
    const bucket = { bucket: 'chat:b', intervalMs: 10_000 };
    const waits = await Promise.all(
      Array.from({ length: 5 }, () => reserveSendSlot(redis, prefix, bucket)),
    );
    const slots = waits.map((w) => Math.round(w / 10_000)).sort();
    expect(slots).toEqual([0, 1, 2, 3, 4]);
  });

  it('keeps buckets apart', async () => {
    await reserveSendSlot(redis, prefix, { bucket: 'chat:c', intervalMs: 60_000 });
    expect(await reserveSendSlot(redis, prefix, { bucket: 'chat:d', intervalMs: 60_000 })).toBe(0);
  });

  it('stores the next slot with an expiry, so idle buckets vanish', async () => {
    await reserveSendSlot(redis, prefix, { bucket: 'chat:e', intervalMs: 5000 });
    const ttl = await redis.pttl(`${prefix}:pace:chat:e`);
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(5000);
  });

  it('frees the bucket once the interval has passed', async () => {
    const bucket = { bucket: 'chat:f', intervalMs: 30 };
    await reserveSendSlot(redis, prefix, bucket);
    await new Promise((resolve) => setTimeout(resolve, 60));
    expect(await reserveSendSlot(redis, prefix, bucket)).toBe(0);
  });

  it('with maxWaitMs, reports a longer wait without reserving it', async () => {
    const bucket = { bucket: 'chat:g', intervalMs: 60_000 };
    await reserveSendSlot(redis, prefix, bucket);
    const first = await reserveSendSlot(redis, prefix, { ...bucket, maxWaitMs: 2000 });
    const second = await reserveSendSlot(redis, prefix, { ...bucket, maxWaitMs: 2000 });
    expect(first).toBeGreaterThan(2000);
    // Nothing was reserved, so the schedule did not move out by another interval.
    expect(second).toBeLessThanOrEqual(first);
  });
});

describe('telegramSendBuckets', () => {
  it('paces a private chat at 1 s and a group at 3 s, plus the bot at 34 ms', () => {
    expect(telegramSendBuckets('acme/tg', '42', false)).toEqual([
      { bucket: 'telegram:acme/tg:chat:42', intervalMs: 1000 },
      { bucket: 'telegram:acme/tg:bot', intervalMs: 34 },
    ]);
    expect(telegramSendBuckets('acme/tg', '-100', true)[0]).toEqual({
      bucket: 'telegram:acme/tg:chat:-100',
      intervalMs: 3000,
    });
  });

  it('makes a burst to one group wait 3 s a message while another chat goes at once', async () => {
    const waitFor = async (chatId: string, isGroup: boolean) => {
      let wait = 0;
      for (const bucket of telegramSendBuckets('burst', chatId, isGroup)) {
        wait = Math.max(wait, await reserveSendSlot(redis, prefix, bucket));
      }
      return wait;
    };
    const group = [
      await waitFor('-100', true),
      await waitFor('-100', true),
      await waitFor('-100', true),
    ];
    expect(group[0]).toBe(0);
    expect(group[1]).toBeGreaterThan(2900);
    expect(group[2]).toBeGreaterThan(5900);
    // Only the bot-wide bucket holds it: three slots of 34 ms were taken before it.
    expect(await waitFor('42', false)).toBeLessThanOrEqual(3 * 34);
  });
});

describe('paceTelegramSend', () => {
  it('keeps each project’s bot in its own buckets, and sends a long wait back to the queue', async () => {
    const to = { accountId: 'tg', chatId: '4242', isGroup: true };
    const started = Date.now();
    await paceTelegramSend(redis, prefix, { projectId: 'pace-a', ...to });
    // Another tenant's account of the same name and chat is not slowed by the first.
    await paceTelegramSend(redis, prefix, { projectId: 'pace-b', ...to });
    expect(Date.now() - started).toBeLessThan(1000);
    // The same project's group: the next slot is 3 s away, waited for in-process; the one
    // after, 6 s away, is over the inline limit: back to the queue, with nothing reserved.
    const second = paceTelegramSend(redis, prefix, { projectId: 'pace-a', ...to });
    await expect(
      paceTelegramSend(redis, prefix, { projectId: 'pace-a', ...to }),
    ).rejects.toMatchObject({ code: 'CHANNEL_PACING' });
    await second;
    expect(Date.now() - started).toBeGreaterThan(2500);
  }, 10_000);
});
