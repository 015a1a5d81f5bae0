import type { Redis } from 'ioredis';
import type { ErrorCode } from '../pipeline/errorCodes.ts';
import type { StageObserver } from './createStageWorker.ts';

/** Upper bounds (ms) of the stage latency histogram buckets. */
export const STAGE_BUCKETS_MS = [
  5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000, 60_000,
] as const;

/** Hash field prefix of a stage's job count per outcome (`outcome_advanced`). */
export const OUTCOME_FIELD = 'outcome_';
/** Hash field prefix of a stage's final failures per error code (`failed_MODEL_REJECTED`). */
export const FAILURE_FIELD = 'failed_';
/** Hash field prefix of a stage's waits for a full bulkhead share, per kind (`bulkhead_mcp`). */
export const BULKHEAD_FIELD = 'bulkhead_';

/** A {@link StageObserver} that batches its counts; `close` sends what is still pending. */
export type BatchedStageObserver = StageObserver & { close(): Promise<void> };

/**
 * An observer that counts each stage job into Redis hashes (one per stage): a histogram of its
 * duration, a count per outcome, and a count per error code of the jobs that failed for good
 * (`awooop_stage_failures_total{stage,code}`; a retried error counts as an outcome only).
 * Workers are separate processes, so the counters live in Redis, where the web process reads
 * them for `/metrics`. Counts are summed in the process and sent once per `flushMs` in one
 * pipeline (per job, they were the commonest Redis command of a run). Counting is best
 * effort: a Redis hiccup loses a batch of samples, never a job.
 */
export function recordStageMetrics(
  redis: Redis,
  prefix: string,
  { flushMs = 1000 }: { flushMs?: number } = {},
): BatchedStageObserver {
  let pending = new Map<string, Map<string, number>>();
  const add = (stage: string, field: string, by: number) => {
    let fields = pending.get(stage);
    if (!fields) pending.set(stage, (fields = new Map<string, number>()));
    fields.set(field, (fields.get(field) ?? 0) + by);
  };
  const flush = async () => {
    if (pending.size === 0) return;
    const batch = pending;
    pending = new Map();
    const multi = redis.multi();
    for (const [stage, fields] of batch) {
      const key = `${prefix}:metrics:stage:${stage}`;
      for (const [field, by] of fields) {
        if (field === 'sum_ms') multi.hincrbyfloat(key, field, by);
        else multi.hincrby(key, field, by);
      }
    }
    await multi.exec().catch(() => {});
  };
  const timer = setInterval(() => void flush(), flushMs);
  timer.unref();
  const observe: StageObserver = ({ stage, outcome, ms, code, share }) => {
    add(stage, 'count', 1);
    add(stage, 'sum_ms', ms);
    for (const le of STAGE_BUCKETS_MS) if (ms <= le) add(stage, `le_${le}`, 1);
    add(stage, `${OUTCOME_FIELD}${outcome}`, 1);
    if (outcome === 'failed')
      add(stage, `${FAILURE_FIELD}${code ?? ('STAGE_FAILED' satisfies ErrorCode)}`, 1);
    if (share !== undefined) add(stage, `${BULKHEAD_FIELD}${share}`, 1);
  };
  return Object.assign(observe, {
    async close() {
      clearInterval(timer);
      await flush();
    },
  });
}
