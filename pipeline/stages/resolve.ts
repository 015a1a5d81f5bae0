import { transitionRun } from '../../db/runs.ts';
import { withProject } from '../../db/withProject.ts';
import type { RunJob } from '../contracts/runJob.ts';
import { bindAgent, sessionKeyFor } from '../runs/bindAgent.ts';
import { failRun } from '../runs/failRun.ts';
import { loadRunWithEvent } from '../runs/loadRun.ts';
import { alreadyDone } from './alreadyDone.ts';
import type { StageContext } from '../StageContext.ts';
import type { StageOutcome } from './StageOutcome.ts';
import type { ErrorCode } from '../errorCodes.ts';

/**
 * resolve: picks the agent by binding, derives the session key and pins the active revision of
 * every contract the run will use, so a later activation never changes a run mid-flight.
 * Harmless twice: it acts only on a `RECEIVED` run and the transition is conditional on it.
 */
export async function resolve(ctx: StageContext, job: RunJob): Promise<StageOutcome> {
  const startedAt = ctx.now();
  return withProject(ctx.pool, job.projectId, async (tx) => {
    const loaded = await loadRunWithEvent(tx, job);
    const run = loaded.run;
    if (run.state !== 'RECEIVED') return alreadyDone(run);
    const event = loaded.event();
    // Every pointer resolve may need, in one read: the agent and its policy are known only
    // once the project contract's bindings are applied.
    const read = await ctx.contracts.activeSnapshot(tx, {
      projectId: run.projectId,
      kinds: ['project', 'agent', 'policy', 'runtime', 'mcp_gateway'],
      named: [{ kind: 'channel', name: event.accountId }],
    });

    const channel = await read('channel', event.accountId);
    const fail = async (code: ErrorCode, message: string) => {
      await failRun(
        ctx,
        tx,
        run,
        { code, message },
        { stage: 'resolve', startedAt, channel: channel?.body ?? null, from: 'RECEIVED' },
      );
      return { next: 'deliver' as const, notice: true };
    };
    const project = await read('project', 'project');
    if (!project)
      return fail('PROJECT_NOT_CONFIGURED', 'the project has no active project contract');
    if (!channel)
      return fail('CHANNEL_NOT_CONFIGURED', `no active channel contract "${event.accountId}"`);
    const agentName = bindAgent(project.body, event);
    const agent = await read('agent', agentName);
    if (!agent) return fail('AGENT_NOT_CONFIGURED', `no active agent "${agentName}"`);
    const policy = await read('policy', agent.body.policy);
    if (!policy) return fail('POLICY_NOT_CONFIGURED', `no active policy "${agent.body.policy}"`);
    const runtime = await read('runtime', 'runtime');
    if (!runtime)
      return fail('RUNTIME_NOT_CONFIGURED', 'the project has no active runtime contract');
    const gateway = await read('mcp_gateway', 'gateway');

    const pinned: Record<string, string> = {
      'project/project': project.revisionId,
      [`channel/${event.accountId}`]: channel.revisionId,
      [`agent/${agentName}`]: agent.revisionId,
      [`policy/${agent.body.policy}`]: policy.revisionId,
      'runtime/runtime': runtime.revisionId,
      ...(gateway ? { 'mcp_gateway/gateway': gateway.revisionId } : {}),
    };
    const moved = await transitionRun(tx, {
      runId: run.runId,
      from: 'RECEIVED',
      to: 'RESOLVED',
      stage: 'resolve',
      actor: ctx.actor,
      startedAt,
      changes: {
        agent: agentName,
        sessionKey: sessionKeyFor(agentName, event),
        pinned,
        deadlineAt: run.createdAt + runtime.body.timeouts.runMs,
      },
      detail: { agent: agentName, pinned },
    });
    return { next: moved ? 'policy' : null };
  });
}
