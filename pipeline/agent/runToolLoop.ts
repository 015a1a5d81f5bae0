import type { CommonQueryMethods } from 'slonik';
import {
  approvalForCall,
  queueApprovalNotices,
  requestApproval,
  type Approval,
} from '../../db/approvals.ts';
import { approverRecipients } from '../approvals/notifyApprovers.ts';
import { appendAudit } from '../../db/auditEvents.ts';
import {
  appendRunStep,
  type ModelStepBody,
  type RunStep,
  type ToolStepBody,
} from '../../db/runSteps.ts';
import { transitionRun, type Run } from '../../db/runs.ts';
import {
  answeredOutcome,
  finishToolCall,
  recordToolCall,
  restartToolCall,
  type ToolCallOutcome,
  type ToolCallStart,
} from '../../db/toolCalls.ts';
import { withProject } from '../../db/withProject.ts';
import { canonicalJson, sha256Hex } from '../contracts/canonicalJson.ts';
import type { MigrationMode } from '../contracts/common.ts';
import { AppError, NonRetryableError } from '../errors.ts';
import { authorizeToolCall, offeredToolIds, type CallerScope } from '../mcp/authorizeToolCall.ts';
import { ToolCallError, type DiscoveredTool } from '../mcp/createMcpGateway.ts';
import { FIREWALL_NOTICE, sanitizeToolResult } from '../mcp/sanitizeToolResult.ts';
import { redactArguments } from '../mcp/redactArguments.ts';
import { modelToolName, toolIdResolver } from '../mcp/toolNames.ts';
import { redactSecrets } from '../sanitize/redactSecrets.ts';
import type { PinnedContracts } from '../stages/loadPinnedContracts.ts';
import type { StageContext } from '../stages/StageContext.ts';
import { callModelRoute } from './callModelRoute.ts';
import { capModelTimeout } from './capModelTimeout.ts';
import type { ChatMessage, ToolSpec } from './modelTypes.ts';
import type { ErrorCode } from '../contracts/errorCodes.ts';

/** A write call suggest mode did not make, for the reply. */
export type Proposal = { tool: string; arguments: Record<string, unknown> };

/** How the loop ended: an answer, or a pause for a human's decision. */
export type LoopOutcome =
  | {
      kind: 'answer';
      text: string;
      proposals: Proposal[];
      last: ModelStepBody;
      /**
       * The answering model step when this attempt made it: not yet checkpointed, so the
       * caller writes it in the transaction that stores the output (one commit, not two).
       */
      unsaved: RunStep | null;
      modelSteps: number;
      toolCalls: number;
      usage: { inputTokens: number; outputTokens: number };
    }
  | { kind: 'paused'; approval: Approval };

/** What the loop starts from: the run, its pinned contracts and the conversation so far. */
export type LoopInput = {
  run: Run;
  contracts: PinnedContracts;
  /** The conversation before any step: system prompt, history, the user's message. */
  messages: ChatMessage[];
  /** The run's checkpoints so far (empty on a first attempt). */
  steps: RunStep[];
  /**
   * Whether the history in `messages` carries answers built on tool results (an earlier run
   * of the session read a tool): untrusted content is then in the run from its first step.
   */
  historyTainted?: boolean;
  signal?: AbortSignal;
};

/**
 * The agent's step loop: model step → tool calls → model step … up to the agent's `maxSteps`
 * model steps (the last is offered no tools, so it answers). Each model step and each tool
 * result is checkpointed in Postgres before the next begins, and the loop starts by replaying
 * the checkpoints, so a crash or an approval pause resumes where it stopped: a finished model
 * step is never paid for again and a finished tool call never made again. A call that was
 * started and never finished (the worker died during it) is made again only when its tool
 * reads; any other is recorded `uncertain` and the model is told its outcome is unknown.
 * Every call goes through the gateway's checks ({@link authorizeToolCall}) and leaves a
 * `tool_calls` row and an audit row; the model is offered only tools a call could reach.
 */
export async function runToolLoop(ctx: StageContext, input: LoopInput): Promise<LoopOutcome> {
  const { run, contracts, signal } = input;
  const steps = [...input.steps];
  const scope: Omit<CallerScope, 'tainted'> = {
    projectId: run.projectId,
    contractProjectId: run.projectId,
    agentName: run.agent ?? '',
    agent: contracts.agent,
    gateway: contracts.gateway,
    runtime: contracts.runtime,
    mode: (run.mode ?? 'shadow') as MigrationMode,
  };
  const offered = await offeredSpecs(ctx, scope);
  const toolIdOf = toolIdResolver(offered.map((o) => o.toolId));
  const known = await ctx.secrets.knownValues(run.projectId);

  const base = [...input.messages];
  // Also on a resume whose servers are down now: the replayed results still need the notice.
  const toolsInPlay = offered.length > 0 || steps.some((s) => s.kind === 'tool');
  if (toolsInPlay && base[0]?.role === 'system') {
    base[0] = { role: 'system', content: `${base[0].content}\n\n${FIREWALL_NOTICE}` };
  }
  const checkpoint = async (tx: CommonQueryMethods, step: RunStep) => {
    await appendRunStep(tx, run, step);
    steps.push(step);
  };

  for (;;) {
    signal?.throwIfAborted();
    const lastModel = steps.findLast((s) => s.kind === 'model');
    const answered = new Set(
      steps
        .filter((s) => s.kind === 'tool' && lastModel && s.stepIndex > lastModel.stepIndex)
        .map((s) => (s.body as ToolStepBody).callIndex),
    );
    const pending =
      lastModel?.kind === 'model'
        ? lastModel.body.toolCalls
            .map((call, callIndex) => ({ call, callIndex }))
            .filter(({ callIndex }) => !answered.has(callIndex))
        : [];

    if (lastModel?.kind === 'model' && pending.length > 0) {
      const { call, callIndex } = pending[0]!;
      const tainted =
        input.historyTainted === true || steps.some((s) => s.kind === 'tool' && s.body.untrusted);
      const result = await handleCall(ctx, {
        run,
        project: contracts.project,
        scope: { ...scope, tainted },
        modelStep: lastModel.stepIndex,
        callIndex,
        call,
        nextStep: steps.length,
        known,
        checkpoint,
        ...(signal ? { signal } : {}),
      });
      if (result.kind === 'paused') return result;
      continue;
    }

    const modelSteps = steps.filter((s) => s.kind === 'model').length;
    if (
      lastModel?.kind === 'model' &&
      (lastModel.body.toolCalls.length === 0 || modelSteps >= contracts.agent.maxSteps)
    ) {
      return answer(steps, null);
    }

    // The last step the agent may take is offered no tools, so it answers in text.
    const tools: ToolSpec[] =
      modelSteps + 1 >= contracts.agent.maxSteps ? [] : offered.map((o) => o.spec);
    const result = await callModelRoute(
      [contracts.policy.modelRoute.primary, ...contracts.policy.modelRoute.fallbacks].map(
        (target) => capModelTimeout(target, contracts.runtime.timeouts.modelMs),
      ),
      {
        messages: [...base, ...replay(steps)],
        responseFormat: contracts.agent.outputSchema ? 'json' : 'text',
        traceId: run.traceId,
        ...(tools.length > 0 ? { tools } : {}),
        ...(signal ? { signal } : {}),
      },
      { resolveSecret: (ref) => ctx.secrets.resolve(run.projectId, ref), logger: ctx.logger },
    );
    const body: ModelStepBody = {
      // Known credential values never reach a checkpoint, even before sanitize.
      text: redactSecrets(result.text, known).text,
      toolCalls: (tools.length > 0 ? result.toolCalls : []).map((call) => ({
        id: call.id,
        name: call.name,
        toolId: toolIdOf(call.name),
        arguments:
          call.arguments === null
            ? null
            : redactArguments(call.arguments, known, { patterns: false }),
      })),
      provider: result.provider,
      model: result.model,
      usage: result.usage,
      latencyMs: result.latencyMs,
      attempts: result.attempts,
    };
    const step: RunStep = { stepIndex: steps.length, kind: 'model', body };
    if (body.toolCalls.length === 0) return answer([...steps, step], step);
    await withProject(ctx.pool, run.projectId, (tx) => checkpoint(tx, step));
  }
}

/** The loop's answer: the last model step's text, with what the whole run did. */
function answer(steps: readonly RunStep[], unsaved: RunStep | null): LoopOutcome {
  const models = steps.flatMap((s) => (s.kind === 'model' ? [s.body] : []));
  const last = models.at(-1)!;
  return {
    kind: 'answer',
    text: last.text,
    proposals: proposalsFrom(steps),
    last,
    unsaved,
    modelSteps: models.length,
    toolCalls: steps.filter((s) => s.kind === 'tool').length,
    usage: {
      inputTokens: models.reduce((n, m) => n + m.usage.inputTokens, 0),
      outputTokens: models.reduce((n, m) => n + m.usage.outputTokens, 0),
    },
  };
}

/** The tools this run may be offered, with what their servers say about them. */
async function offeredSpecs(
  ctx: StageContext,
  scope: Omit<CallerScope, 'tainted'>,
): Promise<{ toolId: string; spec: ToolSpec }[]> {
  const out: { toolId: string; spec: ToolSpec }[] = [];
  // One discovery per server: a server that is down is asked (and logged) once, not per tool.
  const listings = new Map<string, Promise<Map<string, DiscoveredTool>>>();
  for (const toolId of offeredToolIds(scope)) {
    const decision = authorizeToolCall({ ...scope, tainted: false }, toolId);
    if (!decision.resolved) continue;
    const { server, tool } = decision.resolved;
    if (!listings.has(server.name)) {
      const listing = ctx.gateway.discover(scope.projectId, server);
      listings.set(server.name, listing);
      void listing.catch((error: unknown) =>
        // A server that is down costs its tools for this step, not the run.
        ctx.logger.warn(
          {
            projectId: scope.projectId,
            server: server.name,
            err: error instanceof Error ? error.message : String(error),
          },
          'mcp server unavailable; its tools are not offered',
        ),
      );
    }
    try {
      const listed = (await listings.get(server.name)!).get(tool.name);
      if (!listed) {
        ctx.logger.warn(
          { projectId: scope.projectId, tool: toolId },
          'tool not listed by its server; not offered',
        );
        continue;
      }
      out.push({
        toolId,
        spec: {
          name: modelToolName(toolId),
          description: listed.description,
          inputSchema: listed.inputSchema,
        },
      });
    } catch {
      // Logged once for the server above.
    }
  }
  return out;
}

/** The checkpoints as the model reads them: its own turns and the tool results. */
function replay(steps: readonly RunStep[]): ChatMessage[] {
  return steps.map((step): ChatMessage => {
    if (step.kind === 'model') {
      return {
        role: 'assistant',
        content: step.body.text,
        ...(step.body.toolCalls.length > 0
          ? {
              toolCalls: step.body.toolCalls.map(({ id, name, arguments: a }) => ({
                id,
                name,
                arguments: a,
              })),
            }
          : {}),
      };
    }
    const model = steps.findLast((s) => s.kind === 'model' && s.stepIndex < step.stepIndex);
    const callId =
      model?.kind === 'model'
        ? (model.body.toolCalls[step.body.callIndex]?.id ?? step.body.callId)
        : step.body.callId;
    return { role: 'tool', toolCallId: callId, content: step.body.content };
  });
}

function proposalsFrom(steps: readonly RunStep[]): Proposal[] {
  const out: Proposal[] = [];
  for (const step of steps) {
    if (step.kind !== 'tool' || step.body.status !== 'proposed') continue;
    const model = steps.findLast((s) => s.kind === 'model' && s.stepIndex < step.stepIndex);
    const call = model?.kind === 'model' ? model.body.toolCalls[step.body.callIndex] : undefined;
    if (call?.toolId) out.push({ tool: call.toolId, arguments: call.arguments ?? {} });
  }
  return out;
}

/** The digest an approval binds to: the exact tool and arguments. */
export function callDigest(toolId: string, args: Record<string, unknown>): string {
  return sha256Hex(canonicalJson({ tool: toolId, arguments: args }));
}

type CallArgs = {
  run: Run;
  project: PinnedContracts['project'];
  scope: CallerScope;
  modelStep: number;
  callIndex: number;
  call: ModelStepBody['toolCalls'][number];
  nextStep: number;
  known: readonly string[];
  checkpoint: (tx: CommonQueryMethods, step: RunStep) => Promise<void>;
  signal?: AbortSignal;
};

/**
 * One tool call of a model step, from the gateway's decision to its checkpoint.
 * Harmless twice: the call's `tool_calls` row (keyed by run, model step and place) says what
 * an earlier attempt did — finished calls have a checkpoint and are not reached again, a
 * started write is settled `uncertain` rather than repeated — and the approval is keyed the
 * same way, so asking again finds the same one.
 */
async function handleCall(
  ctx: StageContext,
  a: CallArgs,
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
  const toolStep = (body: Omit<ToolStepBody, 'callId' | 'callIndex' | 'toolId'>): RunStep => ({
    stepIndex: a.nextStep,
    kind: 'tool',
    body: { callId: call.id, callIndex: a.callIndex, toolId, ...body },
  });
  const audit = (tx: CommonQueryMethods, status: string, detail: Record<string, unknown> = {}) =>
    appendAudit(tx, {
      projectId: run.projectId,
      chain: `run:${run.runId}`,
      actor: ctx.actor,
      action: 'tool.call',
      subject: `tool:${toolId ?? call.name}`,
      detail: { status, arguments_sha256: start.argumentsSha256, ...detail },
      traceId: run.traceId,
      runId: run.runId,
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
      await audit(tx, status, code ? { code } : {});
      await a.checkpoint(tx, toolStep({ status, code, content, untrusted: false }));
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
  const { server, tool } = decision.resolved;

  if (decision.kind === 'approve') {
    const gate = await withProject(ctx.pool, run.projectId, async (tx) => {
      const existing = await approvalForCall(tx, {
        runId: run.runId,
        stepIndex: a.modelStep,
        callIndex: a.callIndex,
      });
      if (existing?.status === 'approved') {
        if (existing.callSha256 !== start.argumentsSha256 || existing.agent !== a.scope.agentName) {
          return { refuse: 'APPROVAL_MISMATCH' } as const;
        }
        return { approved: existing } as const;
      }
      if (existing && existing.status !== 'pending')
        return {
          refuse: existing.status === 'rejected' ? 'APPROVAL_REJECTED' : 'APPROVAL_EXPIRED',
        } as const;
      const approval = await requestApproval(tx, {
        projectId: run.projectId,
        runId: run.runId,
        traceId: run.traceId,
        stepIndex: a.modelStep,
        callIndex: a.callIndex,
        agent: a.scope.agentName,
        tool: decision.resolved.toolId,
        risk: tool.risk,
        arguments: args,
        callSha256: start.argumentsSha256,
        reasons: decision.reasons,
        ttlSeconds: a.scope.runtime.approvalTtlSeconds,
      });
      await recordToolCall(tx, start, { status: 'awaiting_approval' });
      await queueApprovalNotices(
        tx,
        run.projectId,
        approval.approvalId,
        approverRecipients(a.project),
      );
      const paused = await transitionRun(tx, {
        runId: run.runId,
        from: 'ADMITTED',
        to: 'WAITING_APPROVAL',
        stage: 'execute',
        actor: ctx.actor,
        startedAt: ctx.now(),
        // The run outlives its approval's expiry by its own time budget.
        changes: { deadlineAt: approval.expiresAt + a.scope.runtime.timeouts.runMs },
        detail: {
          approval_id: approval.approvalId,
          tool: approval.tool,
          reasons: approval.reasons,
        },
      });
      if (!paused)
        throw new AppError('RUN_MOVED', `run ${run.runId} left ADMITTED while asking for approval`);
      await appendAudit(tx, {
        projectId: run.projectId,
        chain: `run:${run.runId}`,
        actor: ctx.actor,
        action: 'approval.requested',
        subject: `approval:${approval.approvalId}`,
        detail: {
          tool: approval.tool,
          risk: approval.risk,
          call_sha256: approval.callSha256,
          reasons: approval.reasons,
          expires_at: new Date(approval.expiresAt).toISOString(),
        },
        traceId: run.traceId,
        runId: run.runId,
      });
      return { paused: approval } as const;
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

  // Make the call: record it as started first, so a crash during it is known on resume.
  const earlier = await withProject(ctx.pool, run.projectId, async (tx) => {
    const { row, created } = await recordToolCall(tx, start, { status: 'started' });
    if (row.status === 'awaiting_approval') await restartToolCall(tx, row.callId);
    return { row, created };
  });
  const was = earlier.created ? null : earlier.row.status;
  if (was !== null && was !== 'started' && was !== 'awaiting_approval') {
    // Another worker on this run finished the call after this one read its checkpoints: this
    // attempt stops, and the retry replays the checkpoints instead of calling again.
    throw new AppError(
      'STEP_RACE',
      `call ${a.callIndex} of step ${a.modelStep} was already ${was}`,
      {
        status: 409,
      },
    );
  }
  if (was === 'started' && tool.risk !== 'read') {
    await withProject(ctx.pool, run.projectId, async (tx) => {
      await finishToolCall(tx, earlier.row.callId, {
        status: 'uncertain',
        code: 'TOOL_OUTCOME_UNKNOWN',
      });
      await audit(tx, 'uncertain', { code: 'TOOL_OUTCOME_UNKNOWN' });
      await a.checkpoint(
        tx,
        toolStep({
          status: 'uncertain',
          code: 'TOOL_OUTCOME_UNKNOWN',
          content:
            'outcome unknown: an earlier attempt made this call and did not finish; it was not repeated',
          untrusted: false,
        }),
      );
    });
    return { kind: 'done' };
  }

  const started = performance.now();
  let outcome: ToolCallOutcome;
  let step: RunStep;
  try {
    const raw = await ctx.gateway.call(run.projectId, server, {
      tool: tool.name,
      arguments: args,
      timeoutMs: Math.min(tool.timeoutMs, a.scope.runtime.timeouts.toolMs),
      idempotent: tool.risk === 'read',
      ...(a.signal ? { signal: a.signal } : {}),
    });
    const clean = sanitizeToolResult(decision.resolved.toolId, raw, tool.result, a.known);
    const answered = answeredOutcome(clean, Math.round(performance.now() - started));
    outcome = answered;
    step = toolStep({
      status: answered.status,
      code: answered.code ?? null,
      content: clean.content,
      untrusted: true,
    });
  } catch (error) {
    if (!(error instanceof ToolCallError)) {
      // Not the call's own failure. A cancelled job (shutdown) may have sent it: the row stays
      // `started`, so the retry makes a read again and settles a write `uncertain`. An error no
      // retry will fix (a missing credential) ends the run, and the row says why.
      if (error instanceof NonRetryableError) {
        await withProject(ctx.pool, run.projectId, (tx) =>
          finishToolCall(tx, earlier.row.callId, { status: 'error', code: error.code }),
        ).catch(() => {});
      }
      throw error;
    }
    const uncertain = error.maybeSent && tool.risk !== 'read';
    const status = error.code === 'TOOL_TIMEOUT' ? 'timeout' : uncertain ? 'uncertain' : 'error';
    outcome = { status, code: error.code, latencyMs: Math.round(performance.now() - started) };
    const note =
      uncertain || status === 'timeout' ? '; the call may have been made and is not repeated' : '';
    // A server's own error text is its words: redacted, capped and marked untrusted like a
    // result. The gateway's messages (timeout, unreachable) are ours and quote no server.
    const quotesServer = error.code === 'TOOL_PROTOCOL_ERROR';
    const said = quotesServer
      ? sanitizeToolResult(
          decision.resolved.toolId,
          {
            content: [{ type: 'text', text: `${status}: ${error.message}${note}` }],
            isError: true,
          },
          tool.result,
          a.known,
        ).content
      : `${status}: ${error.message}${note}`;
    step = toolStep({ status, code: error.code, content: said, untrusted: quotesServer });
  }
  await withProject(ctx.pool, run.projectId, async (tx) => {
    await finishToolCall(tx, earlier.row.callId, outcome);
    await audit(tx, outcome.status, {
      code: outcome.code ?? null,
      call_id: earlier.row.callId,
      result_sha256: outcome.resultSha256 ?? null,
    });
    await a.checkpoint(tx, step);
  });
  return { kind: 'done' };
}
