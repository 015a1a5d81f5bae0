import type { CommonQueryMethods } from 'slonik';
import type { Approval } from '../../db/approvals.ts';
import {
  appendRunStep,
  type ModelStepBody,
  type RunStep,
  type ToolStepBody,
} from '../../db/runSteps.ts';
import type { Run } from '../../db/runs.ts';
import { withProject } from '../../db/withProject.ts';
import type { MigrationMode } from '../contracts/common.ts';
import { authorizeToolCall, offeredToolIds, type CallerScope } from '../mcp/authorizeToolCall.ts';
import type { DiscoveredTool } from '../mcp/createMcpGateway.ts';
import { FIREWALL_NOTICE } from '../mcp/sanitizeToolResult.ts';
import { redactArguments } from '../mcp/redactArguments.ts';
import { modelToolName, toolIdResolver } from '../mcp/toolNames.ts';
import { serverShare } from '../mcp/serverShare.ts';
import { serverTimeoutMs } from '../mcp/serverTimeoutMs.ts';
import { redactSecrets } from '../sanitize/redactSecrets.ts';
import { sha256Hex } from '../contracts/canonicalJson.ts';
import type { PinnedContracts } from '../runs/loadPinnedContracts.ts';
import type { StageContext } from '../StageContext.ts';
import { callModelRoute } from './callModelRoute.ts';
import { capModelTimeout } from './capModelTimeout.ts';
import { gatePrivacy } from './gatePrivacy.ts';
import { handleToolCall } from './handleToolCall.ts';
import type { ChatMessage, ToolSpec } from './modelTypes.ts';
import { NonRetryableError, RetryAfterError } from '../errors.ts';
import { createRunBudget } from '../budgets/createRunBudget.ts';

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
      /** Settles the budget of `unsaved` in the transaction that writes it (no-op when null). */
      settle: (tx: CommonQueryMethods) => Promise<void>;
      modelSteps: number;
      toolCalls: number;
      usage: { inputTokens: number; outputTokens: number };
      /** What the privacy gate found over every model step, or null when it found nothing. */
      privacy: { classes: string[]; skipped: string[] } | null;
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
 * Each model step and tool call reserves its budget first ({@link createRunBudget}), keyed by
 * its place in the run, so a replayed or retried step never reserves twice; a step past a
 * budget ends the run `BUDGET_EXCEEDED` before anything is sent.
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
  const budget = createRunBudget(ctx, {
    run,
    project: contracts.project,
    policy: contracts.policy,
  });

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
      await budget.reserveToolCall(lastModel.stepIndex, callIndex, call.toolId ?? call.name);
      const tainted =
        input.historyTainted === true || steps.some((s) => s.kind === 'tool' && s.body.untrusted);
      const result = await handleToolCall(ctx, {
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
      return answer(steps, null, async () => {});
    }

    // The last step the agent may take is offered no tools, so it answers in text.
    const tools: ToolSpec[] =
      modelSteps + 1 >= contracts.agent.maxSteps ? [] : offered.map((o) => o.spec);
    const messages = [...base, ...replay(steps)];
    const stepIndex = steps.length;
    // Before the reservation: a step refused for privacy spends nothing.
    const gate = gatePrivacy(
      [contracts.policy.modelRoute.primary, ...contracts.policy.modelRoute.fallbacks],
      messages,
      contracts.project.dataBoundary?.piiClasses ?? [],
      contracts.policy.privacy.piiAccess,
    );
    // The endpoint the step goes to first is a dependency of its own: a hung provider fills only its
    // share, and a step that finds it full waits in the queue before reserving anything.
    const primary = gate.targets[0]!;
    const lease =
      primary.provider === 'echo'
        ? null
        : await ctx.bulkheads.enter(
            // The URL hashed: a key names the endpoint without carrying what its URL holds.
            `model:${run.projectId}:${primary.provider}:${sha256Hex(primary.baseUrl ?? '').slice(0, 16)}`,
            ctx.bulkheads.limits.dependencySlots,
          );
    let result: Awaited<ReturnType<typeof callModelRoute>>;
    try {
      await budget.reserveModelStep(
        stepIndex,
        Buffer.byteLength(JSON.stringify({ messages, tools }), 'utf8'),
      );
      // A wall-time budget cuts off a call in flight as well as refusing the next one.
      const wallLeft = budget.wallMsLeft();
      const modelMs =
        wallLeft === null
          ? contracts.runtime.timeouts.modelMs
          : Math.max(1, Math.min(contracts.runtime.timeouts.modelMs, wallLeft));
      result = await callModelRoute(
        gate.targets.map((target) => capModelTimeout(target, modelMs)),
        {
          messages,
          responseFormat: contracts.agent.outputSchema ? 'json' : 'text',
          traceId: run.traceId,
          ...(tools.length > 0 ? { tools } : {}),
          ...(signal ? { signal } : {}),
        },
        {
          resolveSecret: (ref) => ctx.secrets.resolve(run.projectId, ref),
          logger: ctx.logger,
          health: ctx.providerHealth,
        },
      ).catch((error: unknown) => {
        budget.checkWallTime();
        throw pastDeadline(error, run.deadlineAt - ctx.now());
      });
    } finally {
      await lease?.release();
    }
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
      ...(gate.decision ? { privacy: gate.decision } : {}),
    };
    const step: RunStep = { stepIndex, kind: 'model', body };
    const settle = (tx: CommonQueryMethods) =>
      budget.settleModelStep(tx, stepIndex, {
        provider: result.provider,
        model: result.model,
        ...result.usage,
      });
    if (body.toolCalls.length === 0) return answer([...steps, step], step, settle);
    // The spend settles with the checkpoint: a step is either both or neither.
    await withProject(ctx.pool, run.projectId, async (tx) => {
      await checkpoint(tx, step);
      await settle(tx);
    });
  }
}

/** The loop's answer: the last model step's text, with what the whole run did. */
function answer(
  steps: readonly RunStep[],
  unsaved: RunStep | null,
  settle: (tx: CommonQueryMethods) => Promise<void>,
): LoopOutcome {
  const models = steps.flatMap((s) => (s.kind === 'model' ? [s.body] : []));
  const last = models.at(-1)!;
  const found = models.flatMap((m) => (m.privacy ? [m.privacy] : []));
  return {
    kind: 'answer',
    text: last.text,
    proposals: proposalsFrom(steps),
    last,
    unsaved,
    settle,
    modelSteps: models.length,
    toolCalls: steps.filter((s) => s.kind === 'tool').length,
    usage: {
      inputTokens: models.reduce((n, m) => n + m.usage.inputTokens, 0),
      outputTokens: models.reduce((n, m) => n + m.usage.outputTokens, 0),
    },
    privacy:
      found.length === 0
        ? null
        : {
            classes: [...new Set(found.flatMap((f) => f.classes))],
            skipped: [
              ...new Set(found.flatMap((f) => f.skipped.map((t) => `${t.provider}:${t.model}`))),
            ],
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
      // Bounded by the contract's timeout (connect included), in the server's share: a
      // server that hangs holds only the runs its share lets in; the others wait in the queue.
      const share = serverShare(ctx.bulkheads, scope.projectId, server);
      const listing = ctx.bulkheads.hold(share.key, share.limit, () =>
        ctx.gateway.discover(scope.projectId, server, {
          timeoutMs: serverTimeoutMs(server, scope.runtime),
        }),
      );
      listings.set(server.name, listing);
      void listing.catch((error: unknown) =>
        // A server that is down costs its tools for this step, not the run.
        isBulkheadFull(error)
          ? undefined
          : ctx.logger.warn(
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
    } catch (error) {
      // The server's share is full: the run waits for it rather than going on without tools.
      if (isBulkheadFull(error)) throw error;
      // Otherwise logged once for the server above.
    }
  }
  return out;
}

function isBulkheadFull(error: unknown): boolean {
  return error instanceof RetryAfterError && error.code === 'BULKHEAD_FULL';
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

/**
 * A provider that asks to be retried later than the run may live ends the run now: waiting
 * would only end it `RUN_TIMEOUT` at its deadline, with the job delayed until then.
 */
function pastDeadline(error: unknown, leftMs: number): unknown {
  if (!(error instanceof RetryAfterError) || error.retryAfterMs <= leftMs) return error;
  return new NonRetryableError(
    error.code,
    `${error.message} The provider asked to wait ${Math.ceil(error.retryAfterMs / 1000)} s, past the run's deadline.`,
    { status: error.status, cause: error, detail: { ...error.detail } },
  );
}
