import type { ContractBodies } from '../contracts/tenantFile.ts';
import { riskAtMost, type MigrationMode, type RiskClass } from '../contracts/common.ts';
import type { GatewayServer } from '../contracts/mcpGatewayContract.ts';
import type { ErrorCode } from '../errorCodes.ts';

type GatewayTool = GatewayServer['tools'][number];

/** What the gateway found for a tool id, whatever the decision. */
export type ResolvedTool = { toolId: string; server: GatewayServer; tool: GatewayTool };

/**
 * The gateway's answer for one call:
 * - `call`: make it now;
 * - `approve`: make it only once a human approves (the reasons say why);
 * - `propose`: do not make it, put it in the reply as a proposal (suggest mode);
 * - `refuse`: never send it to the server.
 */
export type ToolDecision =
  | { kind: 'call'; resolved: ResolvedTool }
  | { kind: 'approve'; resolved: ResolvedTool; reasons: string[] }
  | { kind: 'propose'; resolved: ResolvedTool }
  | { kind: 'refuse'; code: ErrorCode; message: string; resolved: ResolvedTool | null };

/** Who asks, under which contracts, in which mode, and whether untrusted content entered. */
export type CallerScope = {
  /** The project the caller acts for and the project whose gateway contract is given. */
  projectId: string;
  contractProjectId: string;
  agentName: string;
  agent: ContractBodies['agent'];
  gateway: ContractBodies['mcp_gateway'] | null;
  runtime: ContractBodies['runtime'];
  mode: MigrationMode;
  /** Tool content (untrusted) has entered the conversation the arguments came from. */
  tainted: boolean;
};

/**
 * Authorization is Project AND Agent AND Tool AND Environment AND Approval, checked on every
 * call, then the migration mode's side-effect gate:
 * - Project: the tool is declared in the caller's own project's gateway contract.
 * - Agent: a grant names this agent and the tool, and the agent declares the tool; the tool's
 *   risk is within the agent's safety ceiling and its server is in the agent's context domain.
 * - Environment: the grant covers the server's environment.
 * - Approval: the grant's `requireApproval`, a destructive tool, or a write / execute call
 *   made after untrusted tool content entered the run (the context firewall) needs a human.
 * - Mode: shadow, canary and read_only call only read tools; suggest turns other calls into
 *   proposals; auto_remediate makes them, and only when the Runtime contract's
 *   `features.writeTools` is on.
 */
export function authorizeToolCall(scope: CallerScope, toolId: string): ToolDecision {
  const refuse = (code: ErrorCode, message: string, resolved: ResolvedTool | null = null) =>
    ({ kind: 'refuse', code, message, resolved }) as const;
  if (scope.projectId !== scope.contractProjectId) {
    return refuse('TOOL_PROJECT_MISMATCH', 'the gateway contract belongs to another project');
  }
  const resolved = resolveTool(scope.gateway, toolId);
  if (!resolved) return refuse('TOOL_UNKNOWN', `no server of this project declares "${toolId}"`);
  const { server, tool } = resolved;
  const grant = scope.gateway?.grants.find(
    (g) => g.agent === scope.agentName && g.tools.includes(toolId),
  );
  if (!grant || !scope.agent.tools.includes(toolId)) {
    return refuse(
      'TOOL_NOT_GRANTED',
      `agent "${scope.agentName}" has no grant for "${toolId}"`,
      resolved,
    );
  }
  if (server.contextDomain !== scope.agent.contextDomain) {
    return refuse(
      'CONTEXT_DOMAIN',
      `"${toolId}" belongs to context domain "${server.contextDomain}", not "${scope.agent.contextDomain}"`,
      resolved,
    );
  }
  if (!riskAtMost(tool.risk, scope.agent.safetyCeiling)) {
    return refuse(
      'ABOVE_SAFETY_CEILING',
      `"${toolId}" is ${tool.risk}, above the agent's ceiling "${scope.agent.safetyCeiling}"`,
      resolved,
    );
  }
  if (!grant.environments.includes(server.environment)) {
    return refuse(
      'ENVIRONMENT_NOT_GRANTED',
      `the grant does not cover environment "${server.environment}"`,
      resolved,
    );
  }
  const writes = tool.risk !== 'read';
  if (writes) {
    if (scope.mode === 'suggest') return { kind: 'propose', resolved };
    if (scope.mode !== 'auto_remediate') {
      return refuse('MODE_FORBIDS', `${scope.mode} mode calls only read tools`, resolved);
    }
    if (!scope.runtime.features.writeTools) {
      return refuse(
        'WRITE_TOOLS_OFF',
        'write tools are off (runtime features.writeTools)',
        resolved,
      );
    }
  }
  const reasons = approvalReasons(grant.requireApproval, tool.risk, scope.tainted);
  return reasons.length > 0 ? { kind: 'approve', resolved, reasons } : { kind: 'call', resolved };
}

function approvalReasons(requireApproval: boolean, risk: RiskClass, tainted: boolean): string[] {
  const reasons: string[] = [];
  if (requireApproval) reasons.push('grant_requires_approval');
  if (risk === 'destructive') reasons.push('destructive_tool');
  if (risk !== 'read' && tainted) reasons.push('untrusted_content_in_run');
  return reasons;
}

/** The tool ids the model may be offered: those a call could ever reach (call, approve, propose). */
export function offeredToolIds(scope: Omit<CallerScope, 'tainted'>): string[] {
  return scope.agent.tools.filter(
    (toolId) => authorizeToolCall({ ...scope, tainted: false }, toolId).kind !== 'refuse',
  );
}

/** A tool id's server and tool in a gateway contract, or null. */
export function resolveTool(
  gateway: ContractBodies['mcp_gateway'] | null,
  toolId: string,
): ResolvedTool | null {
  const dot = toolId.indexOf('.');
  if (!gateway || dot < 0) return null;
  const server = gateway.servers.find((s) => s.name === toolId.slice(0, dot));
  const tool = server?.tools.find((t) => t.name === toolId.slice(dot + 1));
  return server && tool ? { toolId, server, tool } : null;
}
