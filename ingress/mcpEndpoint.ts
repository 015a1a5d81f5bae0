import Router from '@koa/router';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import type { Context } from 'koa';
import type { Logger } from 'pino';
import type { DatabasePool } from 'slonik';
import { findApiKey } from '../db/apiKeys.ts';
import { can } from '../pipeline/control/permissions.ts';
import { projectExists } from '../db/projects.ts';
import { withProject } from '../db/withProject.ts';
import { Identifier, ProjectId } from '../pipeline/contracts/common.ts';
import type { ErrorCode } from '../pipeline/errorCodes.ts';
import { AppError, NotFoundError } from '../pipeline/errors.ts';
import type { EndpointCaller } from '../pipeline/mcp/callAgentTool.ts';
import { createAgentMcpServer } from '../pipeline/mcp/createAgentMcpServer.ts';
import type { McpGateway } from '../pipeline/mcp/createMcpGateway.ts';
import type { ContractReader } from '../pipeline/runs/createContractReader.ts';
import type { SecretResolver } from '../pipeline/secrets/createSecretResolver.ts';
import type { AppState } from './AppState.ts';
import { parseJson, readRawBody } from './readBody.ts';
import { traceIdFrom } from './traceIdFrom.ts';

/** What the agent MCP endpoint needs. */
export type McpEndpointDeps = {
  pool: DatabasePool;
  logger: Logger;
  secrets: SecretResolver;
  /** The gateway's client side; absent: the endpoint answers 503 `GATEWAY_UNAVAILABLE`. */
  gateway?: McpGateway | undefined;
  /** Reads the active agent, gateway and runtime contracts. */
  contracts: ContractReader;
};

/** The path of an agent's MCP endpoint. */
export const MCP_ENDPOINT_PATH = '/v1/projects/:projectId/agents/:agent/mcp';

/**
 * `ALL /v1/projects/:projectId/agents/:agent/mcp`: AwoooP as an MCP server for external
 * clients, one endpoint per project and agent, listing and proxying only that agent's granted
 * tools with the gateway's checks and audit (`createAgentMcpServer`).
 *
 * Auth: `Authorization: Bearer <key>`, a live `mcp` key of the project bound to this agent.
 * An unknown project is 404, a missing or wrong key 401, a key of another role or bound to
 * another agent 403, all as `{ error: { code, message } }`.
 *
 * Streamable HTTP, stateless: each POST gets a fresh server and transport answering with
 * JSON, so any `web` replica can take any request and nothing outlives it. There is no
 * server-to-client stream to offer, so GET and DELETE are 405, as the spec allows.
 */
export function mcpEndpoint(deps: McpEndpointDeps): Router<AppState> {
  const router = new Router<AppState>();
  const { contracts } = deps;
  router.all(MCP_ENDPOINT_PATH, async (ctx) => {
    const caller = await authenticate(ctx, deps.pool);
    const gateway = deps.gateway;
    if (!gateway) {
      // Thrown, a 5xx AppError would become a generic 500; this one says what is missing.
      ctx.status = 503;
      ctx.body = {
        error: {
          code: 'GATEWAY_UNAVAILABLE' satisfies ErrorCode,
          message: 'this process has no MCP gateway',
        },
      };
      return;
    }
    if (ctx.method !== 'POST') {
      ctx.set('Allow', 'POST');
      ctx.status = 405;
      ctx.body = {
        error: {
          code: 'METHOD_NOT_ALLOWED' satisfies ErrorCode,
          message: 'this MCP endpoint is stateless and has no event stream: send POST',
        },
      };
      return;
    }
    const body = parseJson(await readRawBody(ctx));
    const server = createAgentMcpServer(
      { pool: deps.pool, logger: deps.logger, contracts, gateway, secrets: deps.secrets },
      caller,
    );
    // No sessionIdGenerator: stateless mode, no Mcp-Session-Id issued or checked.
    const transport = new StreamableHTTPServerTransport({ enableJsonResponse: true });
    // Once the answer is out (or the client is gone) the server goes; closing it aborts a
    // call still in flight, which is recorded as cancelled.
    ctx.res.once('close', () => void server.close());
    await server.connect(transport);
    ctx.respond = false;
    try {
      await transport.handleRequest(ctx.req, ctx.res, body);
    } catch (error) {
      if (ctx.res.headersSent) throw error;
      // Nothing was written: let the error middleware answer.
      ctx.respond = true;
      throw error;
    }
  });
  return router;
}

/** The endpoint's caller, or the 404 / 401 / 403 that says why there is none. */
async function authenticate(ctx: Context, pool: DatabasePool): Promise<EndpointCaller> {
  const params = (ctx.params ?? {}) as Record<string, string | undefined>;
  const projectId = String(params.projectId ?? '');
  const agentName = String(params.agent ?? '');
  if (!ProjectId.safeParse(projectId).success) throw projectNotFound(projectId);
  if (!Identifier.safeParse(agentName).success) {
    throw new NotFoundError('AGENT_NOT_FOUND', `not an agent name: "${agentName.slice(0, 63)}"`);
  }
  const match = /^Bearer\s+(\S+)$/i.exec(ctx.get('authorization'));
  const key = await withProject(pool, projectId, async (tx) => {
    const found = match ? await findApiKey(tx, projectId, match[1]!) : null;
    if (found) return found;
    if (!(await projectExists(tx, projectId))) throw projectNotFound(projectId);
    return null;
  });
  if (!key) {
    ctx.set('WWW-Authenticate', 'Bearer');
    throw new AppError(
      'UNAUTHORIZED',
      'a valid MCP key of this project is required (Authorization: Bearer ...)',
      { status: 401 },
    );
  }
  if (!can(key.roles, 'mcp.use')) {
    throw new AppError('FORBIDDEN', 'this key is not an MCP key (awooop keys create --role mcp)', {
      status: 403,
    });
  }
  if (key.agent !== agentName) {
    throw new AppError('WRONG_AGENT', `this key does not open agent "${agentName}"`, {
      status: 403,
    });
  }
  return { projectId, agentName, keyId: key.keyId, traceId: traceIdFrom(ctx.get('traceparent')) };
}

function projectNotFound(projectId: string) {
  return new NotFoundError('PROJECT_NOT_FOUND', `no project "${projectId.slice(0, 63)}"`);
}
