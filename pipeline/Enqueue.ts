import type { RunJob, Stage } from './contracts/runJob.ts';

/**
 * Adds a stage job for a run; the queue layer derives the job id from run and stage, and from
 * `notice` for the deliver job that sends a failed run's failure notice.
 */
export type Enqueue = (
  stage: Stage,
  job: RunJob,
  options?: { delayMs?: number; notice?: boolean },
) => Promise<void>;
