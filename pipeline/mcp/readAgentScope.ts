import type { CommonQueryMethods } from 'slonik';
import { readMigrationState } from '../../db/migrationState.ts';
import type { ContractReader } from '../runs/createContractReader.ts';
import type { CallerScope } from './authorizeToolCall.ts';
import type { ErrorCode } from '../errorCodes.ts';

/** An agent's scope for tool calls now, or why it has none. */
export type AgentScopeRead =
  | { ok: true; scope: Omit<CallerScope, 'tainted'> }
  | { ok: false; code: ErrorCode; message: string };

/**
 * The scope an agent calls tools under right now, outside any run: the active agent, MCP
 * Gateway and Runtime contracts (never drafts, never a run's pinned revisions) and the
 * current migration mode of the agent's flow. A canary flow counts as canary for every
 * caller (the gateway then allows only read tools), since there is no peer to bucket.
 */
export async function readAgentScope(
  db: CommonQueryMethods,
  contracts: ContractReader,
  { projectId, agentName }: { projectId: string; agentName: string },
): Promise<AgentScopeRead> {
  const read = await contracts.activeSnapshot(db, {
    projectId,
    kinds: [],
    named: [
      { kind: 'agent', name: agentName },
      { kind: 'mcp_gateway', name: 'gateway' },
      { kind: 'runtime', name: 'runtime' },
    ],
  });
  const agent = await read('agent', agentName);
  if (!agent) {
    return { ok: false, code: 'AGENT_NOT_CONFIGURED', message: `no active agent "${agentName}"` };
  }
  const runtime = await read('runtime', 'runtime');
  if (!runtime) {
    return {
      ok: false,
      code: 'RUNTIME_NOT_CONFIGURED',
      message: 'the project has no active runtime contract',
    };
  }
  const gateway = await read('mcp_gateway', 'gateway');
  const state = await readMigrationState(db, projectId, agent.body.flow);
  if (!state) {
    return {
      ok: false,
      code: 'MODE_NOT_CONFIGURED',
      message: `flow "${agent.body.flow}" has no migration mode`,
    };
  }
  return {
    ok: true,
    scope: {
      projectId,
      contractProjectId: projectId,
      agentName,
      agent: agent.body,
      gateway: gateway?.body ?? null,
      runtime: runtime.body,
      mode: state.mode,
    },
  };
}
