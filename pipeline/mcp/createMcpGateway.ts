import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { Logger } from 'pino';
import { z } from 'zod';
import { canonicalJson, sha256Hex } from '../contracts/canonicalJson.ts';
import type { GatewayServer } from '../contracts/mcpGatewayContract.ts';
import type { SecretResolver } from '../secrets/createSecretResolver.ts';
import { classifyCallError } from './classifyCallError.ts';
import { connectStreamableHttp } from './connectStreamableHttp.ts';
import { createConnectionPool, type PooledConnection } from './createConnectionPool.ts';
import { createStdioTransport } from './createStdioTransport.ts';
import type { RawToolResult } from './sanitizeToolResult.ts';
import { serverTimeoutMs } from './serverTimeoutMs.ts';
import { ToolCallError } from './ToolCallError.ts';

/** A tool as its server describes it (from `listTools`). */
export type DiscoveredTool = { description: string; inputSchema: Record<string, unknown> };

/** The MCP Gateway's client side: pooled connections to a project's MCP servers. */
export type McpGateway = {
  /**
   * The server's tools by name (`listTools`, every page), cached for the connection's life;
   * a tool the contract declares and the server lacks is logged as a warning on connect.
   */
  discover(
    projectId: string,
    server: GatewayServer,
    options?: {
      /**
       * The bound on connecting and listing together. @defaultValue the server's slowest
       * tool's `timeoutMs` ({@link serverTimeoutMs})
       */
      timeoutMs?: number;
    },
  ): Promise<Map<string, DiscoveredTool>>;
  /**
   * Makes one call. A connection that died (a restarted server) is replaced and the call
   * made again only when the request cannot have reached the server, or `idempotent` says a
   * repeat is harmless (a read tool). `timeoutMs` bounds the connect (when there is no
   * connection yet) and the call together. Throws {@link ToolCallError}.
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

/**
 * Connections are pooled per project, server and credential (see
 * {@link createConnectionPool}): the key is the project, the server's name and a hash of its
 * transport with the credential values resolved, so two projects never share a connection (nor
 * one project's servers a token), and a rotated secret opens a new connection. Credentials are
 * resolved here, at connect time, and go only into the transport: never into job data, logs or
 * model context. A stdio server's stderr is logged with known credential values removed.
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
  async function resolveAll(projectId: string, refs: Record<string, string>) {
    const out: Record<string, string> = {};
    for (const [name, ref] of Object.entries(refs))
      out[name] = await secrets.resolve(projectId, ref);
    return out;
  }

  /**
   * Connects within `timeoutMs`, or closes what it started (a stdio child is killed, an HTTP
   * request aborted) and rejects: the SDK's `initialize` would otherwise wait 60 s, and the
   * `initialized` notification after it has no bound at all.
   */
  /**
   * Closes of connects that timed out, still running: a stdio child is killed only after its
   * stdin has been ended for 2 s, so `close` waits for them, or a process shutting down right
   * after a hung connect would leave the child running with no parent.
   */
  const abandoned = new Set<Promise<void>>();

  async function open(
    projectId: string,
    server: GatewayServer,
    key: string,
    timeoutMs: number,
  ): Promise<PooledConnection> {
    const client = new Client({ name: clientName, version: '1.0.0' });
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        connect(projectId, server, key, client, timeoutMs),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => {
            reject(new Error(`MCP server "${server.name}" did not connect within ${timeoutMs} ms`));
            const closing = client.close().catch(() => {});
            abandoned.add(closing);
            void closing.finally(() => abandoned.delete(closing));
          }, timeoutMs);
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  async function connect(
    projectId: string,
    server: GatewayServer,
    key: string,
    client: Client,
    timeoutMs: number,
  ): Promise<PooledConnection> {
    const t = server.transport;
    const connection: PooledConnection = { key, client, closed: false, busy: 0, retired: false };
    client.onclose = () => {
      connection.closed = true;
    };
    client.onerror = (error) =>
      logger.debug({ projectId, server: server.name, err: error.message }, 'mcp transport error');
    if (t.type === 'stdio') {
      const env = await resolveAll(projectId, t.env);
      const transport = createStdioTransport(t, {
        env,
        known: [...Object.values(env), ...(await secrets.knownValues(projectId))],
        onStderrLine: (line) =>
          logger.info(
            { projectId, server: server.name, stderr: line.slice(0, 2000) },
            'mcp server stderr',
          ),
      });
      await client.connect(transport, { timeout: timeoutMs });
    } else {
      await connectStreamableHttp(client, t, {
        timeoutMs,
        headers: await resolveAll(projectId, t.headers),
        onFallback: () => {
          connection.closed = false;
        },
      });
    }
    logger.debug({ projectId, server: server.name, transport: t.type }, 'mcp server connected');
    return connection;
  }

  const pool = createConnectionPool({
    async configKey(projectId, server) {
      const t = server.transport;
      const resolved = await resolveAll(projectId, t.type === 'stdio' ? t.env : t.headers);
      return sha256Hex(canonicalJson({ t, resolved }));
    },
    open,
  });
  /** Each connection's tools, listed once for the connection's life. */
  const listings = new WeakMap<PooledConnection, Promise<Map<string, DiscoveredTool>>>();

  async function listAll(
    projectId: string,
    server: GatewayServer,
    client: Client,
    deadline: number,
  ): Promise<Map<string, DiscoveredTool>> {
    const tools = new Map<string, DiscoveredTool>();
    let cursor: string | undefined;
    for (let page = 0; page < 100; page++) {
      const timeout = Math.max(1, deadline - performance.now());
      const result = await client.listTools(cursor ? { cursor } : {}, { timeout });
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
    async discover(projectId, server, { timeoutMs = serverTimeoutMs(server) } = {}) {
      const deadline = performance.now() + timeoutMs;
      const left = () => Math.max(1, Math.round(deadline - performance.now()));
      for (let attempt = 0; ; attempt++) {
        const connection = await pool.acquire(projectId, server, left());
        let listing = listings.get(connection);
        if (!listing) {
          listing = listAll(projectId, server, connection.client, deadline);
          listings.set(connection, listing);
        }
        try {
          return await listing;
        } catch (error) {
          listings.delete(connection);
          await pool.drop(connection);
          if (attempt >= 1 || deadline - performance.now() < 1) {
            throw new ToolCallError(
              'TOOL_SERVER_UNAVAILABLE',
              `MCP server "${server.name}" did not list its tools`,
              false,
              error,
            );
          }
        } finally {
          pool.release(connection);
        }
      }
    },

    async call(projectId, server, call) {
      const deadline = performance.now() + call.timeoutMs;
      const left = () => Math.max(1, Math.round(deadline - performance.now()));
      for (let attempt = 0; ; attempt++) {
        const connection = await pool.acquire(projectId, server, left());
        try {
          // The plain request, not `callTool`: that one checks structured output against the
          // tool's schema after the server has acted, and its error would read as a refusal.
          // The result is untrusted text to the gateway either way.
          return await connection.client.request(
            { method: 'tools/call', params: { name: call.tool, arguments: call.arguments } },
            AnyToolResult,
            { timeout: left(), ...(call.signal ? { signal: call.signal } : {}) },
          );
        } catch (error) {
          if (call.signal?.aborted) throw call.signal.reason;
          const failure = classifyCallError(error, {
            server: server.name,
            tool: call.tool,
            timeoutMs: call.timeoutMs,
          });
          if (!failure.connectionLost) throw failure.error;
          await pool.drop(connection);
          // A repeat goes over a new connection, and only once: when the request cannot have
          // reached the server, or the tool only reads.
          if (attempt === 0 && (!failure.error.maybeSent || call.idempotent)) continue;
          throw failure.error;
        } finally {
          pool.release(connection);
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
      await pool.close();
      await Promise.all(abandoned);
    },
  };
}

/**
 * A tools/call result as loosely as it may come: a malformed one is the server's answer all
 * the same (the tool ran), read by the context firewall, not a broken connection to drop.
 */
const AnyToolResult = z.looseObject({
  content: z.unknown().optional(),
  structuredContent: z.unknown().optional(),
  isError: z.boolean().optional().catch(undefined),
});
