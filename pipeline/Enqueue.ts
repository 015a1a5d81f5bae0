import type { RunJob, Stage } from './contracts/runJob.ts';

/**
 * Adds a stage job for a run; the queue layer derives the job id from run and stage, and from
 * `notice` for the deliver job that sends a failed run's failure notice. `priority` is the
 * run's place in the fair order (1 first; see `pipeline/admission/`): ingress sets it from its
 * project's backlog, and each next stage keeps its run's. Absent: 1 (a repair, a resume).
 */
export type Enqueue = (
  stage: Stage,
  job: RunJob,
  options?: { delayMs?: number; notice?: boolean; priority?: number | undefined },
) => Promise<void>;
