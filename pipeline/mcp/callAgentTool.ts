import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import type { Logger } from 'pino';
import type { CommonQueryMethods, DatabasePool } from 'slonik';
import { appendAudit } from '../../db/auditEvents.ts';
import {
  answeredOutcome,
  finishToolCall,
  recordToolCall,
  type ToolCallOutcome,
  type ToolCallStart,
} from '../../db/toolCalls.ts';
import { withProject } from '../../db/withProject.ts';
import { canonicalJson, sha256Hex } from '../contracts/canonicalJson.ts';
import type { RiskClass } from '../contracts/common.ts';
import type { ContractBodies } from '../contracts/tenantFile.ts';
import type { ContractReader } from '../runs/createContractReader.ts';
import { redactSecrets } from '../sanitize/redactSecrets.ts';
import type { SecretResolver } from '../secrets/createSecretResolver.ts';
import { authorizeToolCall, type ToolDecision } from './authorizeToolCall.ts';
import type { McpGateway } from './createMcpGateway.ts';
import { ToolCallError } from './ToolCallError.ts';
import { readAgentScope } from './readAgentScope.ts';
import { redactArguments } from './redactArguments.ts';
import { sanitizeToolResult } from './sanitizeToolResult.ts';
import { toolIdResolver } from './toolNames.ts';
import type { ErrorCode } from '../errorCodes.ts';

/** What an agent's MCP endpoint needs, built once per process. */
export type AgentToolDeps = {
  pool: DatabasePool;
  logger: Logger;
  contracts: ContractReader;
  gateway: McpGateway;
  secrets: SecretResolver;
};

/** Who calls through an agent's MCP endpoint: a project's `mcp` key bound to one agent. */
export type EndpointCaller = {
  projectId: string;
  agentName: string;
  /** The `mcp` key's id: the audit's actor is `mcp_key:<keyId>`. */
  keyId: string;
  /** The trace id of the HTTP request carrying the call. */
  traceId: string;
};

/**
 * One `tools/call` from an external MCP client, with the checks a run's call gets: the name
 * is resolved against the tools the project's active gateway contract declares, then
 * {@link authorizeToolCall} decides under the active contracts and the flow's current mode.
 * The gateway cannot see what an external client's conversation holds — it has read tool
 * results through this very endpoint, or anything else — so its calls count as made after
 * untrusted content (`tainted`): a write needs an approval, and there is no run here to pause,
 * so it is refused. Only a `call` decision reaches the server; the rest come
 * back as `isError` results with their code.
 *
 * Every call, made or not, leaves a `tool_calls` row (via `mcp_endpoint`, arguments redacted,
 * the credential only as its ref) and a `tool.call` audit row on the chain `mcp:<agent>`. A
 * call that is made is recorded `started` before it is sent and settled after, so a crash
 * mid-call leaves it visible. Not idempotent, and need not be: nothing retries an endpoint
 * call but its client, and each attempt is its own recorded call.
 */
export async function callAgentTool(
  deps: AgentToolDeps,
  caller: EndpointCaller,
  call: { name: string; arguments: Record<string, unknown>; signal?: AbortSignal },
): Promise<CallToolResult> {
  const { projectId } = caller;
  const args = call.arguments;
  const known = await deps.secrets.knownValues(projectId);
  const audit = (
    tx: CommonQueryMethods,
    start: ToolCallStart,
    toolId: string,
    detail: Record<string, unknown>,
  ) =>
    appendAudit(tx, {
      projectId,
      chain: `mcp:${caller.agentName}`,
      actor: `mcp_key:${caller.keyId}`,
      action: 'tool.call',
      subject: `tool:${toolId}`,
      detail: {
        via: 'mcp_endpoint',
        agent: caller.agentName,
        server: start.server,
        risk: start.risk,
        arguments_sha256: start.argumentsSha256,
        credential_refs: start.credentialRefs,
        ...detail,
      },
      traceId: caller.traceId,
    });

  const prepared = await withProject(deps.pool, projectId, async (tx) => {
    const read = await readAgentScope(tx, deps.contracts, caller);
    const toolId = read.ok ? resolveName(read.scope.gateway, call.name) : null;
    const decision: ToolDecision = !read.ok
      ? { kind: 'refuse', code: read.code, message: read.message, resolved: null }
      : toolId
        ? authorizeToolCall({ ...read.scope, tainted: true }, toolId)
        : {
            kind: 'refuse',
            code: 'TOOL_UNKNOWN',
            message: `no tool named "${call.name.slice(0, 200)}" is declared for this project`,
            resolved: null,
          };
    const resolved = decision.resolved;
    const subject = toolId ?? call.name.slice(0, 200);
    const start: ToolCallStart = {
      projectId,
      traceId: caller.traceId,
      agent: caller.agentName,
      server: resolved?.server.name ?? '',
      tool: resolved?.tool.name ?? call.name.slice(0, 200),
      risk: resolved?.tool.risk ?? null,
      arguments: redactArguments(args, known),
      // Over the arguments as sent, as an approval of a run's call is bound to them.
      argumentsSha256: sha256Hex(canonicalJson({ tool: subject, arguments: args })),
      credentialRefs: resolved ? deps.gateway.credentialRefs(resolved.server) : [],
    };
    if (decision.kind !== 'call') {
      const refusal = refusalOf(decision);
      await recordToolCall(tx, start, { status: 'refused', code: refusal.code });
      await audit(tx, start, subject, { status: 'refused', code: refusal.code });
      return { kind: 'refused', ...refusal } as const;
    }
    const { row } = await recordToolCall(tx, start, { status: 'started' });
    const { tool } = decision.resolved;
    return {
      kind: 'call',
      callId: row.callId,
      resolved: decision.resolved,
      start,
      // The runtime contract's tool timeout is a ceiling over every tool's own.
      timeoutMs: read.ok ? Math.min(tool.timeoutMs, read.scope.runtime.timeouts.toolMs) : 0,
    } as const;
  });
  if (prepared.kind === 'refused') return errorResult(`${prepared.code}: ${prepared.message}`);

  const { resolved, start, callId } = prepared;
  const { server, tool, toolId } = resolved;
  const started = performance.now();
  let outcome: ToolCallOutcome;
  let result: CallToolResult;
  try {
    const raw = await deps.gateway.call(projectId, server, {
      tool: tool.name,
      arguments: args,
      timeoutMs: prepared.timeoutMs,
      idempotent: tool.risk === 'read',
      ...(call.signal ? { signal: call.signal } : {}),
    });
    const clean = sanitizeToolResult(toolId, raw, tool.result, known);
    outcome = answeredOutcome(clean, Math.round(performance.now() - started));
    result = { content: [{ type: 'text', text: clean.content }], isError: clean.isError };
  } catch (error) {
    // The gateway rethrows the signal's reason (any value) when the client went away mid-call.
    const cancelled = call.signal?.aborted === true && !(error instanceof ToolCallError);
    outcome = failedOutcome(error, cancelled, tool.risk, Math.round(performance.now() - started));
    if (outcome.code === 'TOOL_CALL_FAILED') {
      deps.logger.error({ err: error, projectId, tool: toolId }, 'mcp endpoint call failed');
    }
    // A protocol error's message is the server's own text: credentials are kept out of it too.
    const message =
      error instanceof ToolCallError
        ? redactSecrets(error.message, known).text
        : outcome.code === 'CANCELLED'
          ? 'the client cancelled the call'
          : 'the call failed; the detail is in the server log';
    result = errorResult(`${outcome.code}: ${message}`);
  }
  await withProject(deps.pool, projectId, async (tx) => {
    await finishToolCall(tx, callId, outcome);
    await audit(tx, start, toolId, {
      status: outcome.status,
      code: outcome.code ?? null,
      call_id: callId,
      latency_ms: outcome.latencyMs ?? null,
      result_sha256: outcome.resultSha256 ?? null,
      result_bytes: outcome.resultBytes ?? null,
    });
  });
  return result;
}

/**
 * The tool id a client's name stands for, among every tool the gateway contract declares (not
 * only the offered ones), so a call to a tool the agent was never offered is refused with the
 * reason authorization gives, on the right server's record.
 */
function resolveName(gateway: ContractBodies['mcp_gateway'] | null, name: string): string | null {
  const declared = (gateway?.servers ?? []).flatMap((s) =>
    s.tools.map((t) => `${s.name}.${t.name}`),
  );
  return toolIdResolver(declared)(name);
}

/**
 * Why a decision does not make the call now. An approval pauses a run until a human decides;
 * an endpoint call has no run to pause and its client is waiting on the HTTP request, so a
 * call that needs one is not made (`APPROVAL_REQUIRED`), nor is a suggest-mode proposal
 * (`PROPOSAL_ONLY`). Both are recorded as refused with that code.
 */
function refusalOf(decision: Exclude<ToolDecision, { kind: 'call' }>): {
  code: ErrorCode;
  message: string;
} {
  switch (decision.kind) {
    case 'refuse':
      return { code: decision.code, message: decision.message };
    case 'approve':
      return {
        code: 'APPROVAL_REQUIRED',
        message: `"${decision.resolved.toolId}" needs a human's approval (${decision.reasons.join(', ')}); an MCP endpoint call cannot wait for one, so it was not made`,
      };
    case 'propose':
      return {
        code: 'PROPOSAL_ONLY',
        message: `"${decision.resolved.toolId}" may only be proposed in suggest mode; it was not made`,
      };
  }
}

/** How a call that threw is recorded: a write that may have reached the server is uncertain. */
function failedOutcome(
  error: unknown,
  cancelled: boolean,
  risk: RiskClass,
  latencyMs: number,
): ToolCallOutcome {
  if (error instanceof ToolCallError) {
    const uncertain = error.maybeSent && risk !== 'read';
    const status = error.code === 'TOOL_TIMEOUT' ? 'timeout' : uncertain ? 'uncertain' : 'error';
    return { status, code: error.code, latencyMs };
  }
  return {
    status: cancelled && risk !== 'read' ? 'uncertain' : 'error',
    code: cancelled ? 'CANCELLED' : 'TOOL_CALL_FAILED',
    latencyMs,
  };
}

function errorResult(text: string): CallToolResult {
  return { content: [{ type: 'text', text }], isError: true };
}
