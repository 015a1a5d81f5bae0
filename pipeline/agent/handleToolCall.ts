import type { CommonQueryMethods } from 'slonik';
import type { Approval } from '../../db/approvals.ts';
import type { ModelStepBody, RunStep } from '../../db/runSteps.ts';
import type { Run } from '../../db/runs.ts';
import { finishToolCall, recordToolCall, type ToolCallStart } from '../../db/toolCalls.ts';
import { withProject } from '../../db/withProject.ts';
import { canonicalJson, sha256Hex } from '../contracts/canonicalJson.ts';
import { authorizeToolCall, type CallerScope } from '../mcp/authorizeToolCall.ts';
import type { PinnedContracts } from '../runs/loadPinnedContracts.ts';
import type { StageContext } from '../StageContext.ts';
import { createCallRecorder } from './createCallRecorder.ts';
import { gateToolApproval } from './gateToolApproval.ts';
import { makeToolCall } from './makeToolCall.ts';
import { settleRestartedCall } from './settleRestartedCall.ts';
import { serverShare } from '../mcp/serverShare.ts';
import type { ErrorCode } from '../errorCodes.ts';

/** The digest an approval binds to: the exact tool and arguments. */
export function callDigest(toolId: string, args: Record<string, unknown>): string {
  return sha256Hex(canonicalJson({ tool: toolId, arguments: args }));
}

/** One tool call of a model step, as the step loop hands it over. */
export type ToolCallArgs = {
  run: Run;
  project: PinnedContracts['project'];
  scope: CallerScope;
  /** The model step that asked for the call, and the call's place in it. */
  modelStep: number;
  callIndex: number;
  call: ModelStepBody['toolCalls'][number];
  /** The index the call's checkpoint takes. */
  nextStep: number;
  /** The project's known credential values, kept out of what the model reads. */
  known: readonly string[];
  /** Writes a checkpoint in the transaction given (and keeps it in the loop's steps). */
  checkpoint: (tx: CommonQueryMethods, step: RunStep) => Promise<void>;
  signal?: AbortSignal;
};

/**
 * One tool call of a model step, from the gateway's decision to its checkpoint: a call that
 * is not made (arguments not an object, refused, a suggest-mode proposal) is settled at once;
 * one that needs approval passes the gate ({@link gateToolApproval}) or pauses the run; then
 * a call a previous attempt began is settled ({@link settleRestartedCall}), and otherwise the
 * call is made ({@link makeToolCall}).
 *
 * Harmless twice: the call's `tool_calls` row (keyed by run, model step and place) says what
 * an earlier attempt did — finished calls have a checkpoint and are not reached again, a
 * started write is settled `uncertain` rather than repeated — and the approval is keyed the
 * same way, so asking again finds the same one.
 */
export async function handleToolCall(
  ctx: StageContext,
  a: ToolCallArgs,
): Promise<{ kind: 'done' } | { kind: 'paused'; approval: Approval }> {
  const { run, call } = a;
  const toolId = call.toolId;
  const args = call.arguments ?? {};
  const decision = toolId
    ? authorizeToolCall(a.scope, toolId)
    : ({
        kind: 'refuse',
        code: 'TOOL_UNKNOWN',
        message: `no tool named "${call.name}" is offered`,
        resolved: null,
      } as const);
  const resolved = decision.resolved;
  const start: ToolCallStart = {
    projectId: run.projectId,
    traceId: run.traceId,
    agent: a.scope.agentName,
    server: resolved?.server.name ?? '',
    tool: resolved?.tool.name ?? call.name,
    risk: resolved?.tool.risk ?? null,
    arguments: args,
    argumentsSha256: callDigest(toolId ?? call.name, args),
    credentialRefs: resolved ? ctx.gateway.credentialRefs(resolved.server) : [],
    run: { runId: run.runId, stepIndex: a.modelStep, callIndex: a.callIndex },
  };
  const record = createCallRecorder(ctx, {
    run,
    call,
    callIndex: a.callIndex,
    nextStep: a.nextStep,
    argumentsSha256: start.argumentsSha256,
    checkpoint: a.checkpoint,
  });
  /** Settles a call that is not made: its row, its audit row and its checkpoint, at once. */
  const settleUnmade = async (
    status: 'refused' | 'proposed',
    code: ErrorCode | null,
    content: string,
  ) =>
    withProject(ctx.pool, run.projectId, async (tx) => {
      const { row, created } = await recordToolCall(tx, start, { status, code });
      if (!created && row.status !== status) await finishToolCall(tx, row.callId, { status, code });
      await record.audit(tx, status, code ? { code } : {});
      await record.checkpoint(tx, { status, code, content, untrusted: false });
    });

  if (call.arguments === null) {
    await settleUnmade(
      'refused',
      'INVALID_ARGUMENTS',
      'error: the arguments were not a JSON object; nothing was called',
    );
    return { kind: 'done' };
  }
  if (decision.kind === 'refuse') {
    await settleUnmade(
      'refused',
      decision.code,
      `refused (${decision.code}): ${decision.message}; nothing was called`,
    );
    return { kind: 'done' };
  }
  if (decision.kind === 'propose') {
    await settleUnmade(
      'proposed',
      null,
      'not executed: in this mode a write is a proposal; it is listed in the reply for a human to carry out',
    );
    return { kind: 'done' };
  }

  if (decision.kind === 'approve') {
    const gate = await gateToolApproval(ctx, {
      run,
      project: a.project,
      scope: a.scope,
      modelStep: a.modelStep,
      callIndex: a.callIndex,
      start,
      decision,
    });
    if ('paused' in gate) return { kind: 'paused', approval: gate.paused };
    if ('refuse' in gate) {
      await settleUnmade(
        'refused',
        gate.refuse,
        `refused (${gate.refuse}): the approval does not cover this call; nothing was called`,
      );
      return { kind: 'done' };
    }
  }

  // The server's share is taken before the call is recorded `started`: a run that finds it
  // full waits in the queue with nothing recorded, so its retry is a first try, not a restart.
  const share = serverShare(ctx.bulkheads, run.projectId, decision.resolved.server);
  await ctx.bulkheads.hold(share.key, share.limit, async () => {
    const callId = await settleRestartedCall(ctx, {
      run,
      start,
      modelStep: a.modelStep,
      callIndex: a.callIndex,
      risk: decision.resolved.tool.risk,
      record,
    });
    if (callId === null) return;
    await makeToolCall(ctx, {
      run,
      resolved: decision.resolved,
      arguments: args,
      callId,
      runtime: a.scope.runtime,
      known: a.known,
      record,
      ...(a.signal ? { signal: a.signal } : {}),
    });
  });
  return { kind: 'done' };
}
