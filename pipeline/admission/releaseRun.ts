import type { Redis } from 'ioredis';
import { admissionKeys } from './admissionKeys.ts';

/**
 * Takes a run out of its project's backlog and the platform's: its chain of stage jobs has
 * stopped (finished, failed, or waiting for a human). Harmless twice and for a run never
 * held: ZREM of an absent member changes nothing. Never throws: a lost release only keeps
 * the hold until the run's deadline, when admission drops it.
 */
export async function releaseRun(
  redis: Redis,
  prefix: string,
  run: { projectId: string; runId: string },
): Promise<void> {
  await redis
    .multi()
    .zrem(admissionKeys.projectRuns(prefix, run.projectId), run.runId)
    .zrem(admissionKeys.allRuns(prefix), run.runId)
    .exec()
    .catch(() => {});
}
