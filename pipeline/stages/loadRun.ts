import type { CommonQueryMethods } from 'slonik';
import { getRun, type Run } from '../../db/runs.ts';
import type { RunJob } from '../contracts/runJob.ts';
import { NonRetryableError, TenantIsolationError } from '../errors.ts';
import { stageFor } from '../runs/runState.ts';
import type { StageOutcome } from './StageContext.ts';

/**
 * The run a job names, read inside the job's project. A job whose ids disagree with the row
 * (a forged or corrupted job) is refused, never followed.
 */
export async function loadRun(db: CommonQueryMethods, job: RunJob): Promise<Run> {
  const run = await getRun(db, job.runId);
  if (!run)
    throw new NonRetryableError('RUN_NOT_FOUND', `run ${job.runId} not found in ${job.projectId}`);
  if (run.projectId !== job.projectId || run.traceId !== job.traceId) {
    throw new TenantIsolationError(`job for run ${job.runId} does not match the run`);
  }
  return run;
}

/**
 * The outcome for a run another attempt already moved past this stage: hand it to the stage
 * its state needs now (a failed run goes to deliver, which sends any pending failure notice).
 */
export function alreadyDone(run: Run): StageOutcome {
  return run.state === 'FAILED' ? { next: 'deliver', notice: true } : { next: stageFor(run.state) };
}
