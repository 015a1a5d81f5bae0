import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import {
  CallToolRequestSchema,
  ErrorCode,
  ListToolsRequestSchema,
  McpError,
} from '@modelcontextprotocol/sdk/types.js';
import { callAgentTool, type AgentToolDeps, type EndpointCaller } from './callAgentTool.ts';
import { listAgentTools } from './listAgentTools.ts';
import { FIREWALL_NOTICE } from './sanitizeToolResult.ts';

/**
 * The MCP server one external client request talks to: `tools/list` and `tools/call` of one
 * agent of one project, governed as a run's calls are. A fresh one per HTTP request (the
 * endpoint is stateless), so nothing of one caller is kept for another.
 *
 * The low-level `Server` rather than `McpServer`: the tools and their JSON Schemas are relayed
 * from the gateway's servers as they are, not declared here with zod shapes.
 */
export function createAgentMcpServer(deps: AgentToolDeps, caller: EndpointCaller): Server {
  const server = new Server(
    { name: 'awooop-gateway', version: '1.0.0' },
    {
      capabilities: { tools: {} },
      instructions:
        `The tools agent "${caller.agentName}" of project "${caller.projectId}" is granted, ` +
        `through the AwoooP MCP Gateway: every call is checked and audited. ${FIREWALL_NOTICE}`,
    },
  );
  server.setRequestHandler(ListToolsRequestSchema, async () => {
    const listed = await listAgentTools(deps, caller);
    if (!listed.ok)
      throw new McpError(ErrorCode.InvalidRequest, `${listed.code}: ${listed.message}`);
    return { tools: listed.tools };
  });
  server.setRequestHandler(CallToolRequestSchema, async (request, extra) =>
    callAgentTool(deps, caller, {
      name: request.params.name,
      arguments: request.params.arguments ?? {},
      signal: extra.signal,
    }),
  );
  return server;
}
