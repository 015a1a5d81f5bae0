import type { Redis } from 'ioredis';
import type { StageObserver } from './createStageWorker.ts';

/** Upper bounds (ms) of the stage latency histogram buckets. */
export const STAGE_BUCKETS_MS = [
  5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000, 60_000,
] as const;

/** Hash field prefix of a stage's job count per outcome (`outcome_advanced`). */
export const OUTCOME_FIELD = 'outcome_';
/** Hash field prefix of a stage's final failures per error code (`failed_MODEL_REJECTED`). */
export const FAILURE_FIELD = 'failed_';

/**
 * An observer that counts each stage job into Redis hashes (one per stage): a histogram of its
 * duration, a count per outcome, and a count per error code of the jobs that failed for good
 * (`awooop_stage_failures_total{stage,code}`; a retried error counts as an outcome only).
 * Workers are separate processes, so the counters live in Redis, where the web process reads
 * them for `/metrics`. Counting is best effort: a Redis hiccup loses a sample, never a job.
 */
export function recordStageMetrics(redis: Redis, prefix: string): StageObserver {
  return ({ stage, outcome, ms, code }) => {
    const key = `${prefix}:metrics:stage:${stage}`;
    const multi = redis.multi().hincrby(key, 'count', 1).hincrbyfloat(key, 'sum_ms', ms);
    for (const le of STAGE_BUCKETS_MS) if (ms <= le) multi.hincrby(key, `le_${le}`, 1);
    multi.hincrby(key, `${OUTCOME_FIELD}${outcome}`, 1);
    if (outcome === 'failed') multi.hincrby(key, `${FAILURE_FIELD}${code ?? 'STAGE_FAILED'}`, 1);
    multi.exec().catch(() => {});
  };
}
