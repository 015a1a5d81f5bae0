import { serverTimeoutMs } from './serverTimeoutMs.ts';
import type { Tool } from '@modelcontextprotocol/sdk/types.js';
import { withProject } from '../../db/withProject.ts';
import {
  authorizeToolCall,
  offeredToolIds,
  resolveTool,
  type ResolvedTool,
} from './authorizeToolCall.ts';
import type { AgentToolDeps, EndpointCaller } from './callAgentTool.ts';
import type { DiscoveredTool } from './createMcpGateway.ts';
import { readAgentScope } from './readAgentScope.ts';
import { modelToolName } from './toolNames.ts';
import type { ErrorCode } from '../errorCodes.ts';

/**
 * The tools an agent's MCP endpoint lists: those {@link offeredToolIds} gives under the
 * active contracts and the flow's current mode that an endpoint call could actually make (a
 * tool that would need an approval or be only a proposal is left out: the endpoint has no run
 * to pause), named as a model would see them, with the description and input schema their
 * server gives (`discover`). A tool its server answered without is left out: the server does
 * not have it. A tool whose server cannot be reached now is still listed, with an open schema,
 * so the list does not change with a server's health; calling it reports the server's
 * failure. Not listed at all: no scope (`ok: false` says why).
 */
export async function listAgentTools(
  deps: AgentToolDeps,
  caller: EndpointCaller,
): Promise<{ ok: true; tools: Tool[] } | { ok: false; code: ErrorCode; message: string }> {
  const read = await withProject(deps.pool, caller.projectId, (tx) =>
    readAgentScope(tx, deps.contracts, caller),
  );
  if (!read.ok) return read;
  const offered = offeredToolIds(read.scope)
    .filter((toolId) => authorizeToolCall({ ...read.scope, tainted: true }, toolId).kind === 'call')
    .map((toolId) => resolveTool(read.scope.gateway, toolId))
    .filter((resolved): resolved is ResolvedTool => resolved !== null);
  // One discovery per server, outside any transaction: it may wait on the network.
  const servers = new Map(offered.map((r) => [r.server.name, r.server]));
  const discovered = new Map<string, Map<string, DiscoveredTool>>();
  await Promise.all(
    [...servers.values()].map(async (server) => {
      try {
        discovered.set(
          server.name,
          await deps.gateway.discover(caller.projectId, server, {
            timeoutMs: serverTimeoutMs(server, read.scope.runtime),
          }),
        );
      } catch (error) {
        deps.logger.warn(
          { projectId: caller.projectId, server: server.name, err: (error as Error).message },
          'mcp endpoint: server did not list its tools',
        );
      }
    }),
  );
  const tools = offered.flatMap(({ toolId, server, tool }): Tool[] => {
    const listing = discovered.get(server.name);
    const found = listing?.get(tool.name);
    // A server that answered without this tool does not have it: listing it would only
    // promise a call that fails. (The gateway warns of it when it connects.)
    if (listing && !found) return [];
    return [
      {
        name: modelToolName(toolId),
        title: toolId,
        description: found?.description ?? `${toolId} (its server did not describe it)`,
        inputSchema: objectSchema(found?.inputSchema),
        annotations: {
          readOnlyHint: tool.risk === 'read',
          destructiveHint: tool.risk === 'destructive',
        },
      },
    ];
  });
  return { ok: true, tools };
}

/** A tool's input schema as MCP requires it (`type: object`), or an open one. */
function objectSchema(schema: Record<string, unknown> | undefined): Tool['inputSchema'] {
  if (schema?.type === 'object') return schema as Tool['inputSchema'];
  return { type: 'object' };
}
