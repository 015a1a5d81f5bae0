import type { Job } from 'bullmq';
import { describe, expect, it } from 'vitest';
import { AppError, RetryAfterError } from '../../pipeline/errors.ts';
import { retryAfterMs } from '../../pipeline/retryAfterMs.ts';
import { RETRY_AFTER_MAX_MS, stageBackoff } from '../../workers/stageBackoff.ts';

describe('retryAfterMs', () => {
  const now = Date.parse('2026-11-02T10:00:00Z');

  it('reads delta-seconds, rounding a fraction up to the millisecond', () => {
    expect(retryAfterMs('120', now)).toBe(120_000);
    expect(retryAfterMs(' 0 ', now)).toBe(0);
    expect(retryAfterMs('1.5', now)).toBe(1500);
  });

  it('reads an HTTP-date as the time left until it, never negative', () => {
    expect(retryAfterMs('Mon, 02 Nov 2026 10:00:30 GMT', now)).toBe(30_000);
    expect(retryAfterMs('Mon, 02 Nov 2026 09:59:00 GMT', now)).toBe(0);
  });

  it('gives undefined for an absent, empty or unreadable header', () => {
    for (const header of [null, undefined, '', '  ', '-5', 'soon', '1e3', '12 s']) {
      expect(retryAfterMs(header, now), String(header)).toBeUndefined();
    }
  });
});

describe('stageBackoff', () => {
  const job = { opts: { backoff: { type: 'stage', delay: 1000, jitter: 0 } } } as unknown as Job;

  it("is the stage's exponential backoff for an ordinary failure", async () => {
    expect(await stageBackoff(1, 'stage', new Error('x'), job)).toBe(1000);
    expect(await stageBackoff(3, 'stage', new AppError('STAGE_FAILED', 'x'), job)).toBe(4000);
  });

  it("waits a RetryAfterError's wait when that is longer, at most RETRY_AFTER_MAX_MS", async () => {
    const wait = (ms: number) =>
      new RetryAfterError('MODEL_UNAVAILABLE', 'x', ms, { spendsAttempt: true });
    expect(await stageBackoff(1, 'stage', wait(7000), job)).toBe(7000);
    expect(await stageBackoff(3, 'stage', wait(100), job)).toBe(4000);
    expect(await stageBackoff(1, 'stage', wait(10 * RETRY_AFTER_MAX_MS), job)).toBe(
      RETRY_AFTER_MAX_MS,
    );
  });
});
