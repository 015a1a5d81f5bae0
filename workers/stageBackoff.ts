import { Backoffs, type BackoffOptions, type BackoffStrategy } from 'bullmq';
import { RetryAfterError } from '../pipeline/errors.ts';

/** The backoff type of a stage job: BullMQ runs builtin types itself, so ours has a name. */
export const STAGE_BACKOFF = 'stage';

/**
 * The longest a peer's `Retry-After` may hold a stage job back in one go (a garbled or
 * hostile header could say a year). Waiting less than asked is harmless: a peer still busy
 * says so again.
 */
export const RETRY_AFTER_MAX_MS = 10 * 60_000;

/** A peer's wait, bounded by {@link RETRY_AFTER_MAX_MS}. */
export function boundedRetryAfterMs(error: RetryAfterError): number {
  return Math.min(Math.max(0, error.retryAfterMs), RETRY_AFTER_MAX_MS);
}

/**
 * The delay before a stage job's next attempt, as BullMQ asks a custom strategy for it after
 * a failed attempt: the stage's exponential backoff with jitter (the job's `backoff.delay` and
 * `backoff.jitter`, as BullMQ's own `exponential` computes it), or, when the attempt failed
 * with a {@link RetryAfterError}, its bounded wait if that is longer. The attempt is counted
 * as any failure is.
 */
export const stageBackoff: BackoffStrategy = (attemptsMade, _type, error, job) => {
  const options: BackoffOptions | number | undefined = job?.opts.backoff;
  const { delay = 0, jitter = 0 } = typeof options === 'object' ? options : { delay: options };
  const backoff = Backoffs.builtinStrategies['exponential']!(delay, jitter)(attemptsMade);
  if (!(error instanceof RetryAfterError)) return backoff;
  return Math.max(Number(backoff), boundedRetryAfterMs(error));
};
