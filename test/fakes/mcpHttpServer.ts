import { randomUUID } from 'node:crypto';
import {
  createServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo } from 'node:net';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';
import { paginateToolsList, registerFakeTools, type FakeToolCall } from './mcpTools.ts';

export type McpHttpServerOptions = {
  /**
   * The bearer token every request must carry (401 otherwise, before MCP sees it) and the only
   * credential `lookup` accepts. Any request gets in when absent.
   */
  token?: string | undefined;
  /**
   * Answer requests without the token anyway, so only `lookup` refuses them (`isError`) — for a
   * tool-level failure rather than an HTTP 401.
   * @defaultValue true
   */
  requireAuth?: boolean | undefined;
  /** Answer `tools/list` in pages of this many tools, with `nextCursor`; one page when absent. */
  pageSize?: number | undefined;
  /** Register `extra_0` … `extra_{n-1}` as well. */
  extraTools?: number | undefined;
  /** @defaultValue 0, any free port */
  port?: number | undefined;
};

/** One HTTP request the fake received, recorded before it is authorised or answered. */
export type RecordedMcpRequest = {
  /** `POST` (messages), `GET` (the server-to-client stream) or `DELETE` (end of session). */
  method: string;
  /** Node's lowercase header map, e.g. `headers.authorization`, `headers['mcp-session-id']`. */
  headers: IncomingHttpHeaders;
  /** The parsed JSON-RPC message(s) of a POST; `undefined` otherwise. */
  body: unknown;
};

/** A running fake MCP server speaking Streamable HTTP. */
export type McpHttpServer = {
  /** The MCP endpoint, `http://127.0.0.1:PORT/mcp`. */
  url: string;
  port: number;
  /** Every tool call received, across sessions and restarts, oldest first. */
  calls: FakeToolCall[];
  /** Every HTTP request received, oldest first. */
  requests: RecordedMcpRequest[];
  /** How many sessions are open now. */
  sessionCount(): number;
  /** Ends every session, drops every connection and stops listening. */
  close(): Promise<void>;
  /**
   * Closes as `close` does, then listens again on the same port with no sessions, as a
   * restarted server would: a client still holding an old session id gets 404.
   */
  restart(): Promise<void>;
};

type Session = { server: McpServer; transport: StreamableHTTPServerTransport };

function sendJson(res: ServerResponse, status: number, body: unknown, headers = {}): void {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
}

function jsonRpcError(res: ServerResponse, status: number, code: number, message: string): void {
  sendJson(res, status, { jsonrpc: '2.0', error: { code, message }, id: null });
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * Starts a fake MCP server on 127.0.0.1 at `/mcp`: Streamable HTTP in stateful mode, one
 * McpServer (with the tools of `registerFakeTools`) and transport per session, created by an
 * `initialize` request. An unknown session id gets 404, as the spec says.
 *
 * @example
 * const mcp = await startMcpHttpServer({ token: 'secret' });
 * // … point the gateway at mcp.url with `Authorization: Bearer secret` …
 * expect(mcp.calls).toEqual([{ tool: 'lookup', arguments: { key: 'a' }, credential: 'secret' }]);
 * await mcp.close();
 */
export async function startMcpHttpServer(
  options: McpHttpServerOptions = {},
): Promise<McpHttpServer> {
  const { token, requireAuth = true, pageSize, extraTools } = options;
  const calls: FakeToolCall[] = [];
  const requests: RecordedMcpRequest[] = [];
  /** Sessions by id, once their `initialize` has been answered. */
  const sessions = new Map<string, Session>();
  /** Every session not yet closed, including one whose `initialize` is in flight. */
  const live = new Set<Session>();

  async function openSession(): Promise<Session> {
    const transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: randomUUID,
      onsessioninitialized: (id) => {
        sessions.set(id, session);
      },
    });
    const server = new McpServer({ name: 'fake-mcp-http', version: '1.0.0' });
    const session: Session = { server, transport };
    // Set before connect: Protocol.connect chains its own onclose after this one.
    transport.onclose = () => {
      live.delete(session);
      if (transport.sessionId !== undefined) sessions.delete(transport.sessionId);
    };
    if (pageSize !== undefined) paginateToolsList(server, pageSize);
    registerFakeTools(server, { token, extraTools, onCall: (call) => calls.push(call) });
    live.add(session);
    await server.connect(transport);
    return session;
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const method = req.method ?? 'GET';
    const rawBody = method === 'POST' ? await readBody(req) : '';
    let body: unknown;
    let parsed = true;
    try {
      body = rawBody === '' ? undefined : JSON.parse(rawBody);
    } catch {
      parsed = false;
    }
    requests.push({ method, headers: req.headers, body });

    if (new URL(req.url ?? '/', 'http://localhost').pathname !== '/mcp') {
      return sendJson(res, 404, { error: 'not found' });
    }
    if (token !== undefined && requireAuth && req.headers.authorization !== `Bearer ${token}`) {
      return sendJson(
        res,
        401,
        { jsonrpc: '2.0', error: { code: -32000, message: 'Unauthorized' }, id: null },
        { 'www-authenticate': 'Bearer' },
      );
    }
    if (!parsed) return jsonRpcError(res, 400, -32700, 'Parse error');

    const sessionId = req.headers['mcp-session-id'];
    if (typeof sessionId === 'string') {
      const session = sessions.get(sessionId);
      // The SDK transport's own answer to a session id it does not know.
      if (!session) return jsonRpcError(res, 404, -32001, 'Session not found');
      return session.transport.handleRequest(req, res, body);
    }
    if (method === 'POST' && isInitializeRequest(body)) {
      const session = await openSession();
      return session.transport.handleRequest(req, res, body);
    }
    return jsonRpcError(res, 400, -32000, 'Bad Request: No valid session ID provided');
  }

  const http = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      if (!res.headersSent) jsonRpcError(res, 500, -32603, String(error));
      else res.destroy();
    });
  });

  async function listen(port: number): Promise<number> {
    await new Promise<void>((resolve, reject) => {
      http.once('error', reject);
      http.listen(port, '127.0.0.1', () => {
        http.off('error', reject);
        resolve();
      });
    });
    return (http.address() as AddressInfo).port;
  }

  let listening = false;
  async function stop(): Promise<void> {
    // Closing a server closes its transport, which ends the session's open streams.
    await Promise.all([...live].map((session) => session.server.close()));
    live.clear();
    sessions.clear();
    if (!listening) return;
    listening = false;
    await new Promise<void>((resolve) => {
      http.close(() => resolve());
      http.closeAllConnections();
    });
  }

  const port = await listen(options.port ?? 0);
  listening = true;
  return {
    url: `http://127.0.0.1:${port}/mcp`,
    port,
    calls,
    requests,
    sessionCount: () => sessions.size,
    close: stop,
    async restart() {
      await stop();
      // Let in-process clients see their pooled connections close (a timer, then an immediate:
      // one event-loop poll in between), so their next request opens a new connection and gets
      // 404 rather than `fetch failed` (UND_ERR_SOCKET, other side closed) on the dead one.
      await new Promise((resolve) => setTimeout(resolve, 0));
      await new Promise((resolve) => setImmediate(resolve));
      await listen(port);
      listening = true;
    },
  };
}
