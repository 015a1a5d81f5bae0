import { readMigrationState } from '../../db/migrationState.ts';
import { transitionRun } from '../../db/runs.ts';
import { withProject } from '../../db/withProject.ts';
import type { RunJob } from '../contracts/runJob.ts';
import { decideMode } from '../runs/decideMode.ts';
import { admitToWindow } from '../runs/rateGate.ts';
import { failRun } from '../runs/failRun.ts';
import { loadPinnedContracts } from '../runs/loadPinnedContracts.ts';
import { loadRunWithEvent } from '../runs/loadRun.ts';
import { alreadyDone } from './alreadyDone.ts';
import type { StageContext } from '../StageContext.ts';
import type { StageOutcome } from './StageOutcome.ts';
import type { ErrorCode } from '../errorCodes.ts';

/** The code a wait over a rate gate is logged with (no run fails with it any more). */
const RATE_LIMITED: ErrorCode = 'RATE_LIMITED';

/**
 * policy: the run's effective policy — migration mode (and whether it may speak), rate gates
 * and the model route with its fallbacks. A refusal ends the run with a code
 * (`MODE_NOT_CONFIGURED`); a run over the policy's rate waits for the next minute's window.
 * Harmless twice: it acts only on a `RESOLVED` run, the transition is conditional on that
 * state, and the rate windows rank a run by its id.
 */
export async function policy(ctx: StageContext, job: RunJob): Promise<StageOutcome> {
  const startedAt = ctx.now();
  return withProject(ctx.pool, job.projectId, async (tx) => {
    const loaded = await loadRunWithEvent(tx, job);
    const run = loaded.run;
    if (run.state !== 'RESOLVED') return alreadyDone(run);
    const event = loaded.event();
    const contracts = await loadPinnedContracts(ctx, tx, run);
    const fail = async (code: ErrorCode, message: string, detail?: Record<string, unknown>) => {
      await failRun(
        ctx,
        tx,
        run,
        { code, message, ...(detail ? { detail } : {}) },
        {
          stage: 'policy',
          startedAt,
          channel: contracts.channel,
          from: 'RESOLVED',
          removeText: contracts.policy.privacy.storeTranscripts === false,
        },
      );
      return { next: 'deliver' as const, notice: true };
    };

    const flow = contracts.agent.flow;
    const state = await readMigrationState(tx, run.projectId, flow);
    if (!state) return fail('MODE_NOT_CONFIGURED', `flow "${flow}" has no migration mode`);
    const decision = decideMode(state, {
      projectId: run.projectId,
      flow,
      channel: run.channel,
      senderId: event.sender.id,
    });

    // The policy's rate gate delays, never fails: the run was accepted, and admission's limits
    // are the ones that refuse before anything is written. A run over it waits in the queue
    // for the next minute's window (spread over a second, so the waiting runs do not all ask
    // at once), and keeps its place in the backlog; one still waiting at its deadline is timed
    // out by the sweeper as any late run is.
    const rate = contracts.policy.rate;
    const base = `${ctx.redisPrefix}:rate:${run.projectId}`;
    const gates = [
      {
        key: `${base}:peer:${run.channel}:${run.accountId}:${event.sender.id}`,
        limit: rate.perPeerPerMinute,
        reason: `more than ${rate.perPeerPerMinute} messages a minute from this peer`,
      },
      {
        key: `${base}:project`,
        limit: rate.perProjectPerMinute,
        reason: `more than ${rate.perProjectPerMinute} messages a minute for the project`,
      },
    ];
    for (const gate of gates) {
      const window = await admitToWindow(ctx.redis, {
        key: gate.key,
        runId: run.runId,
        limit: gate.limit,
        now: ctx.now(),
      });
      if (!window.admitted) {
        return {
          waitMs: window.nextWindowMs + Math.floor(Math.random() * 1000),
          reason: `${RATE_LIMITED}: ${gate.reason}`,
        };
      }
    }

    const route = [contracts.policy.modelRoute.primary, ...contracts.policy.modelRoute.fallbacks];
    const effective = {
      flow,
      mode: decision.mode,
      live: decision.live,
      reason: decision.reason,
      policy: contracts.policyName,
      route: route.map((t) => ({ provider: t.provider, model: t.model })),
      // Read by the stages that end the run, from the run row (no contract read).
      ...(contracts.policy.privacy.storeTranscripts === false ? { storeTranscripts: false } : {}),
    };
    const moved = await transitionRun(tx, {
      runId: run.runId,
      from: 'RESOLVED',
      to: 'ADMITTED',
      stage: 'policy',
      actor: ctx.actor,
      startedAt,
      changes: { mode: decision.mode, live: decision.live, policy: effective },
      detail: { mode: decision.mode, live: decision.live, reason: decision.reason },
    });
    return { next: moved ? 'execute' : null };
  });
}
