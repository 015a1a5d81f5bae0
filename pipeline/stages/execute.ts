import { claimExecution, sessionHistory, transitionRun } from '../../db/runs.ts';
import { withProject } from '../../db/withProject.ts';
import { callModelRoute } from '../agent/callModelRoute.ts';
import type { ChatMessage } from '../agent/modelTypes.ts';
import { startProgress } from '../channels/startProgress.ts';
import type { RunJob } from '../contracts/runJob.ts';
import { redactSecrets } from '../sanitize/redactSecrets.ts';
import { loadPinnedContracts } from './loadPinnedContracts.ts';
import { alreadyDone, loadRunWithEvent } from './loadRun.ts';
import type { StageContext, StageOutcome } from './StageContext.ts';

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
 * execute: calls the model through the route (primary, then fallbacks) with the agent's prompt
 * and the session's recent history. A run waits while an earlier run of its conversation is
 * unfinished, so a conversation's messages are answered one at a time, in order.
 * Harmless twice: it acts only on an `ADMITTED` run; a crash before the `EXECUTED` commit calls
 * the model again (its output was never stored), and the commit is conditional on the state.
 * Tool calls through the MCP Gateway and per-step checkpoints are the next seam here.
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
    if (run.state !== 'ADMITTED') return { done: alreadyDone(run) } as const;
    const blocked = await claimExecution(tx, run);
    if (blocked) {
      const waitMs = sessionWaitMs(ctx.now() - run.createdAt);
      return { blocked: { by: blocked.blockedBy, waitMs } } as const;
    }
    const event = loaded.event();
    const contracts = await loadPinnedContracts(ctx, tx, run);
    const prompt = await ctx.contracts.artifactText(tx, {
      projectId: run.projectId,
      ...contracts.agent.prompt,
    });
    const history = await sessionHistory(tx, {
      projectId: run.projectId,
      sessionKey: run.sessionKey ?? '',
      beforeSeq: run.runSeq,
      limit: Math.floor(contracts.agent.history.maxMessages / 2),
    });
    return { run, contracts, event, prompt, history } as const;
  });
  if ('done' in prepared) return prepared.done;
  if ('blocked' in prepared) {
    return { waitMs: prepared.blocked.waitMs, reason: `waiting for run ${prepared.blocked.by}` };
  }
  const { run, contracts, event, prompt, history } = prepared;

  const messages: ChatMessage[] = [{ role: 'system', content: prompt }];
  for (const turn of [...history].reverse()) {
    messages.push(
      { role: 'user', content: turn.input },
      { role: 'assistant', content: turn.output },
    );
  }
  messages.push({ role: 'user', content: event.message.text });

  const progress = startProgress(ctx, { run, channel: contracts.channel, event });
  let result;
  try {
    result = await callModelRoute(
      [contracts.policy.modelRoute.primary, ...contracts.policy.modelRoute.fallbacks],
      {
        messages,
        responseFormat: contracts.agent.outputSchema ? 'json' : 'text',
        traceId: run.traceId,
        ...(signal ? { signal } : {}),
      },
      { resolveSecret: (ref) => ctx.secrets.resolve(run.projectId, ref), logger: ctx.logger },
    );
  } finally {
    await progress.stop();
  }
  // Known credential values never reach the run row, even between execute and sanitize.
  const known = await ctx.secrets.knownValues(run.projectId);
  const { text } = redactSecrets(result.text, known);

  const moved = await withProject(ctx.pool, job.projectId, (tx) =>
    transitionRun(tx, {
      runId: run.runId,
      from: 'ADMITTED',
      to: 'EXECUTED',
      stage: 'execute',
      actor: ctx.actor,
      startedAt,
      changes: {
        output: {
          text,
          provider: result.provider,
          model: result.model,
          usage: result.usage,
          latencyMs: result.latencyMs,
          attempts: result.attempts,
        },
      },
      detail: {
        provider: result.provider,
        model: result.model,
        fallbacks: result.attempts.length - 1,
      },
    }),
  );
  return { next: moved ? 'sanitize' : null };
}
