import type { CommonQueryMethods } from 'slonik';
import { getRun, getRunWithEvent, type Run } from '../../db/runs.ts';
import { ConversationEvent } from '../contracts/conversationEvent.ts';
import type { RunJob } from '../contracts/runJob.ts';
import { NonRetryableError, TenantIsolationError } from '../errors.ts';

/**
 * The run a job names, read inside the job's project. A job whose ids disagree with the row
 * (a forged or corrupted job) is refused, never followed.
 */
export async function loadRun(db: CommonQueryMethods, job: RunJob): Promise<Run> {
  return checkRun(job, await getRun(db, job.runId));
}

/**
 * {@link loadRun} with the inbound event the run answers, read in the same query. `event()`
 * parses it: a stage calls it once it knows it will act on the run, so an event that no longer
 * fits the schema cannot disturb a job for a run that is already past the stage.
 */
export async function loadRunWithEvent(
  db: CommonQueryMethods,
  job: RunJob,
): Promise<{ run: Run; event: () => ConversationEvent }> {
  const found = await getRunWithEvent(db, job.runId);
  const run = checkRun(job, found?.run ?? null);
  return { run, event: () => ConversationEvent.parse(found!.eventBody) };
}

function checkRun(job: RunJob, run: Run | null): Run {
  if (!run)
    throw new NonRetryableError('RUN_NOT_FOUND', `run ${job.runId} not found in ${job.projectId}`);
  if (run.projectId !== job.projectId || run.traceId !== job.traceId) {
    throw new TenantIsolationError(`job for run ${job.runId} does not match the run`);
  }
  return run;
}
