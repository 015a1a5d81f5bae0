import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';
import {
  getDefaultEnvironment,
  StdioClientTransport,
} from '@modelcontextprotocol/sdk/client/stdio.js';
import {
  StreamableHTTPClientTransport,
  StreamableHTTPError,
} from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import { ErrorCode, McpError } from '@modelcontextprotocol/sdk/types.js';
import type { Logger } from 'pino';
import { z } from 'zod';
import { canonicalJson, sha256Hex } from '../contracts/canonicalJson.ts';
import type { GatewayServer } from '../contracts/mcpGatewayContract.ts';
import { AppError } from '../errors.ts';
import { redactKnownValues } from '../sanitize/redactSecrets.ts';
import type { SecretResolver } from '../secrets/createSecretResolver.ts';
import type { RawToolResult } from './sanitizeToolResult.ts';

/** A tool as its server describes it (from `listTools`). */
export type DiscoveredTool = { description: string; inputSchema: Record<string, unknown> };

/** How a call through the gateway failed. */
export class ToolCallError extends AppError {
  /** Whether the request may have reached the server (a repeat could act twice). */
  readonly maybeSent: boolean;
  constructor(code: AppError['code'], message: string, maybeSent: boolean, cause?: unknown) {
    super(code, message, { status: 502, ...(cause ? { cause } : {}) });
    this.maybeSent = maybeSent;
  }
}

/** The MCP Gateway's client side: pooled connections to a project's MCP servers. */
export type McpGateway = {
  /**
   * The server's tools by name (`listTools`, every page), cached for the connection's life;
   * a tool the contract declares and the server lacks is logged as a warning on connect.
   */
  discover(projectId: string, server: GatewayServer): Promise<Map<string, DiscoveredTool>>;
  /**
   * Makes one call. A connection that died (a restarted server) is replaced and the call
   * made again only when the request cannot have reached the server, or `idempotent` says a
   * repeat is harmless (a read tool). Throws {@link ToolCallError}.
   */
  call(
    projectId: string,
    server: GatewayServer,
    call: {
      tool: string;
      arguments: Record<string, unknown>;
      timeoutMs: number;
      idempotent: boolean;
      signal?: AbortSignal;
    },
  ): Promise<RawToolResult>;
  /** The credential refs a server's connection uses (what tool_calls records). */
  credentialRefs(server: GatewayServer): string[];
  /** Closes every connection (shutdown). */
  close(): Promise<void>;
};

type Connection = {
  key: string;
  client: Client;
  tools: Promise<Map<string, DiscoveredTool>> | null;
  closed: boolean;
  /** Calls in flight on this connection. */
  busy: number;
  /** Superseded (a newer credential or config): closed once no call is in flight. */
  retired: boolean;
};

/**
 * Connections are pooled per project, server and credential: the key is the project, the
 * server's name and a hash of its transport with the credential values resolved, so two
 * projects never share a connection (nor one project's servers a token), and a rotated
 * secret opens a new connection. Credentials are resolved here, at connect time, and go only
 * into the transport: never into job data, logs or model context. A stdio server's stderr is
 * logged with known credential values removed.
 */
export function createMcpGateway({
  secrets,
  logger,
  clientName = 'awooop-gateway',
}: {
  secrets: SecretResolver;
  logger: Logger;
  clientName?: string;
}): McpGateway {
  const pool = new Map<string, Promise<Connection>>();

  async function resolveAll(projectId: string, refs: Record<string, string>) {
    const out: Record<string, string> = {};
    for (const [name, ref] of Object.entries(refs))
      out[name] = await secrets.resolve(projectId, ref);
    return out;
  }

  async function open(projectId: string, server: GatewayServer, key: string): Promise<Connection> {
    const t = server.transport;
    const client = new Client({ name: clientName, version: '1.0.0' });
    const connection: Connection = {
      key,
      client,
      tools: null,
      closed: false,
      busy: 0,
      retired: false,
    };
    // A server that exits or drops the session: the next use of this key connects again.
    client.onclose = () => {
      connection.closed = true;
    };
    client.onerror = (error) =>
      logger.debug({ projectId, server: server.name, err: error.message }, 'mcp transport error');
    if (t.type === 'stdio') {
      const env = await resolveAll(projectId, t.env);
      const transport = new StdioClientTransport({
        command: t.command,
        args: t.args,
        env: { ...getDefaultEnvironment(), ...env },
        stderr: 'pipe',
      });
      // Line by line, so a value split across two pipe chunks is still found; the project's
      // other credentials are removed too, not only the ones this server was given.
      const known = [...Object.values(env), ...(await secrets.knownValues(projectId))];
      let partial = '';
      transport.stderr?.on('data', (chunk: Buffer) => {
        const lines = (partial + chunk.toString('utf8')).split('\n');
        partial = lines.pop() ?? '';
        if (partial.length > 8192) {
          lines.push(partial);
          partial = '';
        }
        for (const raw of lines) {
          const line = redactKnownValues(raw, known).text.trimEnd();
          if (line)
            logger.info(
              { projectId, server: server.name, stderr: line.slice(0, 2000) },
              'mcp server stderr',
            );
        }
      });
      await client.connect(transport);
      logger.debug({ projectId, server: server.name, transport: t.type }, 'mcp server connected');
      return connection;
    }
    const headers = await resolveAll(projectId, t.headers);
    const url = new URL(t.url);
    try {
      await client.connect(new StreamableHTTPClientTransport(url, { requestInit: { headers } }));
    } catch (error) {
      // The spec's backwards-compatible path: a server that refuses the streamable POST with
      // a 4xx speaks the older HTTP+SSE transport.
      const refused =
        error instanceof StreamableHTTPError && (error.code ?? 0) >= 400 && (error.code ?? 0) < 500;
      if (!t.sseFallback || !refused || error.code === 401 || error.code === 403) throw error;
      // Client.connect closed the client when its initialize failed, and so marked this
      // connection closed; the same client is about to connect again.
      connection.closed = false;
      const sse: Transport = new SSEClientTransport(url, {
        requestInit: { headers },
        eventSourceInit: {
          fetch: (u, init) =>
            fetch(u, {
              ...init,
              headers: { ...headers, ...(init?.headers as Record<string, string>) },
            }),
        },
      });
      await client.connect(sse);
    }
    logger.debug({ projectId, server: server.name, transport: t.type }, 'mcp server connected');
    return connection;
  }

  async function connectionKey(projectId: string, server: GatewayServer) {
    const t = server.transport;
    const resolved = await resolveAll(projectId, t.type === 'stdio' ? t.env : t.headers);
    return `${projectId}\u0000${server.name}\u0000${sha256Hex(canonicalJson({ t, resolved }))}`;
  }

  async function get(
    projectId: string,
    server: GatewayServer,
    reopened = false,
  ): Promise<Connection> {
    const key = await connectionKey(projectId, server);
    let entry = pool.get(key);
    if (!entry) {
      // A newer credential or config for the same server: the older connection goes once
      // the calls in flight on it are done (a run on a pinned revision and the endpoint on
      // the active one may alternate; neither has its calls cut).
      for (const [other, conn] of pool) {
        if (other.startsWith(`${projectId}\u0000${server.name}\u0000`)) {
          pool.delete(other);
          void conn
            .then(async (c) => {
              c.retired = true;
              if (c.busy === 0) await c.client.close();
            })
            .catch(() => {});
        }
      }
      entry = open(projectId, server, key);
      pool.set(key, entry);
      entry.catch(() => pool.delete(key));
    }
    let connection: Connection;
    try {
      connection = await entry;
    } catch (error) {
      throw new ToolCallError(
        'TOOL_SERVER_UNAVAILABLE',
        `cannot connect to MCP server "${server.name}"`,
        false,
        error,
      );
    }
    if (!connection.closed) return connection;
    if (pool.get(key) === entry) pool.delete(key);
    if (reopened) {
      throw new ToolCallError(
        'TOOL_SERVER_UNAVAILABLE',
        `MCP server "${server.name}" closed the connection`,
        false,
      );
    }
    return get(projectId, server, true);
  }

  async function drop(connection: Connection) {
    const current = pool.get(connection.key);
    if (current && (await current.catch(() => null)) === connection) pool.delete(connection.key);
    connection.closed = true;
    await connection.client.close().catch(() => {});
  }

  /** Ends one use of a connection; a superseded one closes after its last use. */
  function release(connection: Connection) {
    connection.busy -= 1;
    if (connection.retired && connection.busy === 0) void connection.client.close().catch(() => {});
  }

  async function listAll(
    projectId: string,
    server: GatewayServer,
    client: Client,
  ): Promise<Map<string, DiscoveredTool>> {
    const tools = new Map<string, DiscoveredTool>();
    let cursor: string | undefined;
    for (let page = 0; page < 100; page++) {
      const result = await client.listTools(cursor ? { cursor } : {});
      for (const tool of result.tools) {
        tools.set(tool.name, {
          description: tool.description ?? tool.title ?? tool.name,
          inputSchema: tool.inputSchema,
        });
      }
      cursor = result.nextCursor;
      if (!cursor) break;
    }
    // Once per connection: the contract names tools this server does not offer. They are not
    // offered to agents (nor listed by the MCP endpoint); the operator should fix the contract.
    const missing = server.tools.map((t) => t.name).filter((name) => !tools.has(name));
    if (missing.length > 0) {
      logger.warn(
        { projectId, server: server.name, tools: missing },
        'mcp server does not offer tools the gateway contract declares',
      );
    }
    return tools;
  }

  return {
    async discover(projectId, server) {
      for (let attempt = 0; ; attempt++) {
        const connection = await get(projectId, server);
        connection.tools ??= listAll(projectId, server, connection.client);
        connection.busy += 1;
        try {
          return await connection.tools;
        } catch (error) {
          connection.tools = null;
          await drop(connection);
          if (attempt >= 1) {
            throw new ToolCallError(
              'TOOL_SERVER_UNAVAILABLE',
              `MCP server "${server.name}" did not list its tools`,
              false,
              error,
            );
          }
        } finally {
          release(connection);
        }
      }
    },

    async call(projectId, server, call) {
      for (let attempt = 0; ; attempt++) {
        const connection = await get(projectId, server);
        connection.busy += 1;
        try {
          // The plain request, not `callTool`: that one checks structured output against the
          // tool's schema after the server has acted, and its error would read as a refusal.
          // The result is untrusted text to the gateway either way.
          return await connection.client.request(
            { method: 'tools/call', params: { name: call.tool, arguments: call.arguments } },
            AnyToolResult,
            { timeout: call.timeoutMs, ...(call.signal ? { signal: call.signal } : {}) },
          );
        } catch (error) {
          if (call.signal?.aborted) throw call.signal.reason;
          if (error instanceof McpError && error.code === (ErrorCode.RequestTimeout as number)) {
            throw new ToolCallError(
              'TOOL_TIMEOUT',
              `"${call.tool}" did not answer in ${call.timeoutMs} ms`,
              true,
              error,
            );
          }
          // An error the server answered with: the connection is fine. Only the errors a
          // server gives before it runs the tool (unknown tool, bad arguments, a bad request)
          // prove the call was not made; any other may come from the middle of it.
          if (error instanceof McpError && error.code !== (ErrorCode.ConnectionClosed as number)) {
            throw new ToolCallError(
              'TOOL_PROTOCOL_ERROR',
              `"${call.tool}" failed on the server: ${error.message}`,
              !REFUSED_BEFORE_RUNNING.has(error.code),
              error,
            );
          }
          const notSent = isNotSent(error);
          await drop(connection);
          if (attempt === 0 && (notSent || call.idempotent)) continue;
          throw new ToolCallError(
            'TOOL_SERVER_UNAVAILABLE',
            `MCP server "${server.name}" failed during "${call.tool}"`,
            !notSent,
            error,
          );
        } finally {
          release(connection);
        }
      }
    },

    credentialRefs(server) {
      const t = server.transport;
      const refs = Object.values(t.type === 'stdio' ? t.env : t.headers).filter(
        (ref) => ref.startsWith('secret:') || ref.startsWith('env:'),
      );
      return [...new Set(refs)].sort();
    },

    async close() {
      const all = [...pool.values()];
      pool.clear();
      await Promise.all(all.map((c) => c.then((conn) => conn.client.close()).catch(() => {})));
    },
  };
}

/**
 * JSON-RPC errors a server answers before it runs a tool. Invalid params is not among them:
 * some servers send it after the tool ran, when its output does not fit its own schema.
 */
const REFUSED_BEFORE_RUNNING = new Set<number>([
  ErrorCode.ParseError,
  ErrorCode.InvalidRequest,
  ErrorCode.MethodNotFound,
]);

/**
 * A tools/call result as loosely as it may come: a malformed one is the server's answer all
 * the same (the tool ran), read by the context firewall, not a broken connection to drop.
 */
const AnyToolResult = z.looseObject({
  content: z.unknown().optional(),
  structuredContent: z.unknown().optional(),
  isError: z.boolean().optional().catch(undefined),
});

/**
 * Failures that prove the request never reached a server able to act on it: a streamable-HTTP
 * session the server no longer knows (it restarted), or a transport already closed.
 */
function isNotSent(error: unknown): boolean {
  if (error instanceof StreamableHTTPError) return error.code === 404;
  return error instanceof Error && error.message === 'Not connected';
}
