import { appendAudit } from '../../db/auditEvents.ts';
import { requeueOutbound, withdrawOutbound } from '../../db/outboundMessages.ts';
import { getRun, listTransitions, reviveRun, type Run } from '../../db/runs.ts';
import { withProject } from '../../db/withProject.ts';
import type { Context } from '../context.ts';
import type { Stage } from '../contracts/runJob.ts';
import { NonRetryableError, NotFoundError, RetryAfterError, type AppError } from '../errors.ts';
import type { Enqueue } from '../Enqueue.ts';
import { stageFor, type RunState } from '../contracts/runState.ts';

/** What {@link retryRun} needs: the pool, who acts, and the queue layer. */
export type RetryRunDeps = Context & {
  /** Who retries, for the audit trail (`cli:alice`). */
  actor: string;
  enqueue: Enqueue;
  /**
   * Removes the run's job of `stage` (its failure-notice job with `notice`) unless a worker is
   * running it, and says which: a job that is not running (failed and kept for inspection,
   * waiting, delayed for a retry) still holds the job id, and an add under a taken id does
   * nothing, so the retry's job would never run. One that is running is left alone.
   */
  clearJob: (
    stage: Stage,
    runId: string,
    notice: boolean,
  ) => Promise<'removed' | 'none' | 'running'>;
};

/** What a retry did. */
export type RetriedRun = {
  runId: string;
  /** The stage enqueued: the one the run failed in. */
  stage: Stage;
  /** The state the run is back in. */
  state: RunState;
  /** The failure the retry cleared. */
  failureCode: string;
  /** The how-manieth retry of the run this is (1 for the first). */
  retry: number;
  /** Answer chunks withdrawn or refused by the failure and queued again. */
  requeued: number;
};

/**
 * `awooop runs retry`: takes a `FAILED` run back to the last state it reached — the stage it
 * failed in — and enqueues that stage, so the run goes on from there: an execute retry resumes
 * the tool loop from its checkpoints (no finished model step or tool call is repeated), a
 * deliver retry sends only what the channel never got. The outbound ledger keeps its
 * guarantee: a row `sent` or `uncertain` is never sent again; the answer chunks the failure
 * withdrew, and the one the channel refused, are queued again under their own ids (so the
 * same idempotency keys); an unsent failure notice is withdrawn (and queued again if the
 * retry fails too). A run that failed at an approval is refused: the decision is final.
 *
 * Harmless twice: the run moves only from `FAILED` (a second retry finds it in another state
 * and is refused, naming it), only withdrawn or refused rows are requeued, and the stage job's
 * id is per run and stage.
 *
 * @throws NotFoundError `RUN_NOT_FOUND`; NonRetryableError `RUN_NOT_FAILED` (naming the state)
 *   or `RUN_NOT_RETRYABLE`; RetryAfterError `RUN_JOB_RUNNING` while the run's job is still
 *   running. Nothing is changed then (but a finished job of the run removed).
 */
export async function retryRun(
  deps: RetryRunDeps,
  { projectId, runId }: { projectId: string; runId: string },
): Promise<RetriedRun> {
  const plan = await withProject(deps.pool, projectId, async (tx) => {
    const run = await getRun(tx, runId);
    if (!run) throw new NotFoundError('RUN_NOT_FOUND', `no run ${runId} in project ${projectId}`);
    if (run.textRemovedAt !== null) {
      throw new NonRetryableError(
        'RUN_NOT_RETRYABLE',
        `run ${runId} cannot be retried: its message text was removed (privacy.storeTranscripts: false, or retention)`,
        { status: 409 },
      );
    }
    return planRetry(run, await listTransitions(tx, runId));
  });
  // The stage's job and the failure notice's: a retry that fails again must be able to
  // enqueue its notice, and a job still running (the failing attempt finishing) would make
  // the retry's enqueue a no-op, so that is refused until it is done.
  for (const [stage, notice] of [
    [plan.stage, false],
    ['deliver', true],
  ] as const) {
    if ((await deps.clearJob(stage, runId, notice)) === 'running') {
      throw new RetryAfterError(
        'RUN_JOB_RUNNING',
        `run ${runId}'s ${notice ? 'failure notice' : stage} job is still running; retry the run when it has finished (in a few seconds)`,
        2000,
      );
    }
  }
  const retried = await withProject(deps.pool, projectId, async (tx) => {
    const detail = { failure_code: plan.failureCode, retry: plan.retry };
    if (!(await reviveRun(tx, plan.run, { to: plan.state, actor: deps.actor, detail }))) {
      const now = await getRun(tx, runId);
      throw notFailed(runId, now?.state ?? 'gone');
    }
    const requeued =
      plan.state === 'SANITIZED'
        ? await requeueOutbound(tx, runId, ['reply'], { codes: ['RUN_FAILED'], refused: true })
        : 0;
    // The answer is coming after all: a failure notice not yet sent would contradict it.
    const withdrawn = await withdrawOutbound(tx, runId, ['failure'], 'RUN_RETRIED');
    await appendAudit(tx, {
      projectId,
      chain: `run:${runId}`,
      actor: deps.actor,
      action: 'run.retried',
      subject: `run:${runId}`,
      detail: {
        stage: plan.stage,
        to_state: plan.state,
        failure_code: plan.failureCode,
        retry: plan.retry,
        requeued_chunks: requeued,
        withdrawn_notices: withdrawn,
      },
      traceId: plan.run.traceId,
      runId,
    });
    return requeued;
  });
  // After the commit: if this enqueue is lost, the sweeper finds the run in its stage's state
  // with no job (the finished one is gone) and enqueues it.
  await deps.enqueue(plan.stage, {
    projectId,
    runId,
    traceId: plan.run.traceId,
    stage: plan.stage,
  });
  return {
    runId,
    stage: plan.stage,
    state: plan.state,
    failureCode: plan.failureCode,
    retry: plan.retry,
    requeued: retried,
  };
}

function notFailed(runId: string, state: string): AppError {
  return new NonRetryableError(
    'RUN_NOT_FAILED',
    `run ${runId} is ${state}, not FAILED: only a failed run can be retried`,
    { status: 409, detail: { state } },
  );
}

/** Where a failed run goes back to: the state of its last transition before it failed. */
function planRetry(
  run: Run,
  transitions: Awaited<ReturnType<typeof listTransitions>>,
): { run: Run; state: RunState; stage: Stage; failureCode: string; retry: number } {
  if (run.state !== 'FAILED') throw notFailed(run.runId, run.state);
  const failureCode = run.failureCode ?? 'UNKNOWN';
  const failedAt = transitions.findLastIndex((t) => t.toState === 'FAILED');
  const last = transitions[failedAt - 1]?.toState as RunState | undefined;
  const stage = last === undefined ? null : stageFor(last);
  if (last === 'WAITING_APPROVAL') {
    throw new NonRetryableError(
      'RUN_NOT_RETRYABLE',
      `run ${run.runId} failed at its approval (${failureCode}): the decision stands; the user can send the message again`,
      { status: 409, detail: { failure_code: failureCode } },
    );
  }
  if (last === undefined || stage === null) {
    throw new NonRetryableError(
      'RUN_NOT_RETRYABLE',
      `run ${run.runId} has no stage to go back to (${failureCode})`,
      { status: 409 },
    );
  }
  const retry = transitions.filter((t) => t.stage === 'retry').length + 1;
  return { run, state: last, stage, failureCode, retry };
}
