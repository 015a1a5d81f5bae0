import {
  claimExecution,
  getRun,
  historyTainted,
  sessionHistory,
  transitionRun,
} from '../../db/runs.ts';
import { withProject } from '../../db/withProject.ts';
import { listApprovals } from '../../db/approvals.ts';
import { RetryAfterError } from '../errors.ts';
import { appendRunStep, listRunSteps } from '../../db/runSteps.ts';
import type { ChatMessage } from '../agent/modelTypes.ts';
import { runToolLoop, type Proposal } from '../agent/runToolLoop.ts';
import { withAttachmentNote } from '../agent/withAttachmentNote.ts';
import { notifyApprovers } from '../approvals/notifyApprovers.ts';
import { startProgress } from '../channels/startProgress.ts';
import type { RunJob } from '../contracts/runJob.ts';
import { loadPinnedContracts } from '../runs/loadPinnedContracts.ts';
import { loadRunWithEvent } from '../runs/loadRun.ts';
import { alreadyDone } from './alreadyDone.ts';
import type { StageContext } from '../StageContext.ts';
import type { StageOutcome } from './StageOutcome.ts';

/** How long a run behind one that waits for an approval waits before looking again. */
export const APPROVAL_WAIT_MS = 5000;

/**
 * How long a run waits before looking again when an earlier run of its conversation is
 * unfinished: 150 ms at first, then a tenth of how long it has waited, at most a second — a
 * follow-up behind a long model call does not poll Postgres and Redis several times a second,
 * and answers at most a tenth of its wait later than it could have.
 */
export function sessionWaitMs(waitedMs: number): number {
  return Math.min(1000, Math.max(150, Math.floor(waitedMs / 10)));
}

/**
 * execute: the agent's step loop ({@link runToolLoop}): the model with the agent's prompt, the
 * session's recent history and the tools this run may call, through the MCP Gateway, until it
 * answers. A run waits while an earlier run of its conversation is unfinished, so a
 * conversation's messages are answered one at a time, in order. A call that needs a human
 * moves the run to `WAITING_APPROVAL` and asks the approvers; a decision brings it back here,
 * and the loop resumes from its checkpoints. For a waiting run, execute only (re)sends unsent
 * approval notices.
 * Harmless twice: it acts only on an `ADMITTED` (or waiting) run; the loop replays its
 * checkpoints instead of repeating finished steps; the `EXECUTED` commit is conditional on
 * the state.
 */
export async function execute(
  ctx: StageContext,
  job: RunJob,
  { signal }: { signal?: AbortSignal } = {},
): Promise<StageOutcome> {
  const startedAt = ctx.now();
  const prepared = await withProject(ctx.pool, job.projectId, async (tx) => {
    const loaded = await loadRunWithEvent(tx, job);
    const run = loaded.run;
    if (run.state === 'WAITING_APPROVAL') {
      const contracts = await loadPinnedContracts(ctx, tx, run);
      const pending = await listApprovals(tx, { runId: run.runId, status: 'pending', limit: 1 });
      return { waiting: { run, contracts, approval: pending[0] ?? null } } as const;
    }
    if (run.state !== 'ADMITTED') return { done: alreadyDone(run) } as const;
    const blocked = await claimExecution(tx, run);
    if (blocked) {
      // A human's decision takes minutes: look again every few seconds, not every second.
      const waitMs = blocked.awaitingApproval
        ? APPROVAL_WAIT_MS
        : sessionWaitMs(ctx.now() - run.createdAt);
      return { blocked: { by: blocked.blockedBy, waitMs } } as const;
    }
    const event = loaded.event();
    const contracts = await loadPinnedContracts(ctx, tx, run);
    const prompt = await ctx.contracts.artifactText(tx, {
      projectId: run.projectId,
      ...contracts.agent.prompt,
    });
    const window = {
      projectId: run.projectId,
      sessionKey: run.sessionKey ?? '',
      beforeSeq: run.runSeq,
      limit: Math.floor(contracts.agent.history.maxMessages / 2),
    };
    const history = await sessionHistory(tx, window);
    // Only an agent with tools can act on what earlier answers carried.
    const tainted = contracts.agent.tools.length > 0 && (await historyTainted(tx, window));
    const steps = await listRunSteps(tx, run.runId);
    return { run, contracts, event, prompt, history, steps, tainted } as const;
  });
  if ('done' in prepared) return prepared.done;
  if ('waiting' in prepared) {
    const { run, contracts, approval } = prepared.waiting;
    return approval
      ? askApprovers(ctx, job, { run, approval, project: contracts.project })
      : { next: null };
  }
  if ('blocked' in prepared) {
    return { waitMs: prepared.blocked.waitMs, reason: `waiting for run ${prepared.blocked.by}` };
  }
  const { run, contracts, event, prompt, history, steps, tainted } = prepared;

  const messages: ChatMessage[] = [{ role: 'system', content: prompt }];
  for (const turn of [...history].reverse()) {
    messages.push(
      { role: 'user', content: withAttachmentNote(turn.input, turn.attachments) },
      { role: 'assistant', content: turn.output },
    );
  }
  messages.push({
    role: 'user',
    content: withAttachmentNote(event.message.text, event.message.attachments),
  });

  const progress = startProgress(ctx, { run, channel: contracts.channel, event });
  let outcome;
  try {
    outcome = await runToolLoop(ctx, {
      run,
      contracts,
      messages,
      steps: [...steps],
      historyTainted: tainted,
      ...(signal ? { signal } : {}),
    });
  } finally {
    await progress.stop();
  }
  if (outcome.kind === 'paused') {
    return askApprovers(ctx, job, { run, approval: outcome.approval, project: contracts.project });
  }
  const text =
    outcome.proposals.length > 0 && !contracts.agent.outputSchema
      ? `${outcome.text}\n\n${describeProposals(outcome.proposals)}`
      : outcome.text;

  const moved = await withProject(ctx.pool, job.projectId, async (tx) => {
    const executed = await transitionRun(tx, {
      runId: run.runId,
      from: 'ADMITTED',
      to: 'EXECUTED',
      stage: 'execute',
      actor: ctx.actor,
      startedAt,
      changes: {
        output: {
          text,
          provider: outcome.last.provider,
          model: outcome.last.model,
          usage: outcome.usage,
          latencyMs: outcome.last.latencyMs,
          attempts: outcome.last.attempts,
          steps: outcome.modelSteps,
          toolCalls: outcome.toolCalls,
          ...(outcome.proposals.length > 0 ? { proposals: outcome.proposals } : {}),
        },
      },
      detail: {
        provider: outcome.last.provider,
        model: outcome.last.model,
        fallbacks: outcome.last.attempts.length - 1,
        steps: outcome.modelSteps,
        tool_calls: outcome.toolCalls,
        // The privacy gate's decision, by class and target name: never the data itself.
        ...(outcome.privacy
          ? { pii_classes: outcome.privacy.classes, pii_skipped: outcome.privacy.skipped }
          : {}),
      },
    });
    // The answering step's checkpoint commits with the output, never on its own.
    if (executed && outcome.unsaved) {
      await appendRunStep(tx, run, outcome.unsaved);
      await outcome.settle(tx);
    }
    return executed;
  });
  return { next: moved ? 'sanitize' : null };
}

/**
 * Sends an approval's unsent notices, then hands the run on. A failed send never fails the
 * run: a `retry_after` delays this job (no attempt spent); any other failure leaves the
 * notice queued and the sweeper brings the run back to send it. A decision that
 * landed while this job was still running could not enqueue the resume (this job holds the
 * run's execute job id), so a run found admitted again runs this same job once more.
 */
async function askApprovers(
  ctx: StageContext,
  job: RunJob,
  args: Parameters<typeof notifyApprovers>[1],
): Promise<StageOutcome> {
  try {
    await notifyApprovers(ctx, args);
  } catch (error) {
    // Telegram asked to wait (or pacing did): the job waits without spending an attempt and
    // comes back here, so the other approvers are asked in seconds, not at the next sweep.
    if (error instanceof RetryAfterError) throw error;
    ctx.logger.warn(
      {
        runId: job.runId,
        traceId: job.traceId,
        err: error instanceof Error ? error.message : String(error),
      },
      'approval notice not sent; the sweeper will try again',
    );
  }
  const now = await withProject(ctx.pool, job.projectId, (tx) => getRun(tx, job.runId));
  return now?.state === 'ADMITTED'
    ? { waitMs: 10, reason: 'approval decided while asking' }
    : { next: null };
}

/** Suggest mode's write calls, as a list the reply carries for a human to act on. */
function describeProposals(proposals: readonly Proposal[]): string {
  const lines = proposals.map((p) => `- ${p.tool} ${JSON.stringify(p.arguments)}`);
  return `Proposed actions (not carried out):\n${lines.join('\n')}`;
}
