import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type ServerResponse } from 'node:http';
import { createServer, connect, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { SSEServerTransport } from '@modelcontextprotocol/sdk/server/sse.js';
import { CallToolResultSchema } from '@modelcontextprotocol/sdk/types.js';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { GatewayServer } from '../../pipeline/contracts/mcpGatewayContract.ts';
import { createMcpGateway, type McpGateway } from '../../pipeline/mcp/createMcpGateway.ts';
import { ToolCallError } from '../../pipeline/mcp/ToolCallError.ts';
import type { SecretResolver } from '../../pipeline/secrets/createSecretResolver.ts';
import { startMcpHttpServer, type McpHttpServer } from '../fakes/mcpHttpServer.ts';
import {
  FAKE_TOOL_NAMES,
  mcpStdioServerCommand,
  readStdioCalls,
  registerFakeTools,
  type FakeToolCall,
} from '../fakes/mcpTools.ts';
import { waitFor } from '../helpers/waitFor.ts';

const PROJECT = 'acme';
const OTHER = 'beta';
const TOKEN = 'upstream-token-3c9f71a2e8';
const OTHER_TOKEN = 'upstream-token-b04d5e6f17';
const STDIO_TOKEN = 'stdio-token-5b8e21c4d9';

/** Closers for whatever a test opened, run after it, newest first. */
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'awooop-gateway-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A pino line as the gateway wrote it. */
type LogLine = { msg: string; stderr?: string } & Record<string, unknown>;

/**
 * A gateway over an in-test resolver: `secrets` maps `"<project> <ref>"` to the value, and
 * setting a key again rotates that secret. Its log lines (debug and up) land in `logs`.
 */
function startGateway(): {
  gateway: McpGateway;
  secrets: Map<string, string>;
  logs: LogLine[];
  rawLogs: string[];
} {
  const secrets = new Map<string, string>();
  const resolver: SecretResolver = {
    async resolve(projectId, ref) {
      const value = secrets.get(`${projectId} ${ref}`);
      if (value === undefined) throw new Error(`project ${projectId} has no ${ref}`);
      return value;
    },
    async knownValues(projectId) {
      return [...secrets].filter(([key]) => key.startsWith(`${projectId} `)).map(([, v]) => v);
    },
  };
  const rawLogs: string[] = [];
  const logs: LogLine[] = [];
  const logger = pino(
    { level: 'debug' },
    {
      write(line: string) {
        rawLogs.push(line);
        logs.push(JSON.parse(line) as LogLine);
      },
    },
  );
  const gateway = createMcpGateway({ secrets: resolver, logger });
  cleanups.push(() => gateway.close());
  return { gateway, secrets, logs, rawLogs };
}

async function startHttp(options: Parameters<typeof startMcpHttpServer>[0]) {
  const server = await startMcpHttpServer(options);
  cleanups.push(() => server.close());
  return server;
}

function httpServer(url: string, headers: Record<string, string> = {}): GatewayServer {
  return GatewayServer.parse({
    name: 'fake',
    contextDomain: 'general',
    environment: 'test',
    transport: { type: 'streamable_http', url, headers },
    tools: [
      { name: 'lookup', risk: 'read' },
      { name: 'restart', risk: 'write' },
      { name: 'slow', risk: 'read' },
    ],
  });
}

/** The stdio fake, logging its calls to a file of its own (returned as `logPath`). */
function stdioServer(env: Record<string, string>): { server: GatewayServer; logPath: string } {
  const { command, args } = mcpStdioServerCommand();
  const server = GatewayServer.parse({
    name: 'local',
    contextDomain: 'general',
    environment: 'test',
    transport: { type: 'stdio', command, args, env: { FAKE_MCP_LOG: 'env:FAKE_MCP_LOG', ...env } },
    tools: [{ name: 'lookup', risk: 'read' }],
  });
  return { server, logPath: join(dir, `${randomUUID()}.jsonl`) };
}

function lookup(key: string, idempotent = true) {
  return { tool: 'lookup', arguments: { key }, timeoutMs: 10_000, idempotent };
}

function restartService(service: string) {
  return { tool: 'restart', arguments: { service }, timeoutMs: 10_000, idempotent: false };
}

function textOf(result: unknown): string {
  const { content } = CallToolResultSchema.parse(result);
  return content.map((part) => (part.type === 'text' ? part.text : '')).join('');
}

const RpcRequest = z.object({ method: z.string() });

/** The JSON-RPC method of each message the HTTP fake received, oldest first. */
function methodsSeen(server: McpHttpServer): { method: string; sessionId: unknown }[] {
  return server.requests.flatMap((request) =>
    (Array.isArray(request.body) ? request.body : [request.body]).flatMap((message) => {
      const parsed = RpcRequest.safeParse(message);
      return parsed.success
        ? [{ method: parsed.data.method, sessionId: request.headers['mcp-session-id'] }]
        : [];
    }),
  );
}

function countOf(server: McpHttpServer, method: string): number {
  return methodsSeen(server).filter((m) => m.method === method).length;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function errorOf(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error('expected the call to fail');
    },
    (error: unknown) => error,
  );
}

/**
 * A TCP proxy to `port` that, once armed, forwards the next `tools/call` request and then
 * closes the client's socket as the answer starts, without passing any of it on: the server
 * acts, and the client sees `fetch failed` (other side closed) and cannot tell whether it did.
 */
async function startCuttingProxy(port: number): Promise<{ url: string; armCut: () => void }> {
  let armed = false;
  const sockets = new Set<Socket>();
  const proxy = createServer((client) => {
    const upstream = connect(port, '127.0.0.1');
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('error', () => {});
      socket.on('close', () => sockets.delete(socket));
    }
    let cutting = false;
    client.on('data', (chunk: Buffer) => {
      if (armed && chunk.includes('"method":"tools/call"')) {
        armed = false;
        cutting = true;
      }
      upstream.write(chunk);
    });
    // The upstream socket stays open when cutting, so the server finishes the call.
    upstream.on('data', (chunk: Buffer) => (cutting ? client.destroy() : client.write(chunk)));
    upstream.on('close', () => client.destroy());
    client.on('close', () => {
      if (!cutting) upstream.destroy();
    });
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  cleanups.push(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => proxy.close(resolve));
  });
  const { port: proxyPort } = proxy.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${proxyPort}/mcp`,
    armCut: () => {
      armed = true;
    },
  };
}

/**
 * A server that speaks only the older HTTP+SSE transport: `GET /mcp` opens a session's event
 * stream, its messages are POSTed to `/messages?sessionId=…`, and a streamable-HTTP `POST /mcp`
 * is refused with 405. `openStreams` counts the event streams not yet closed.
 */
async function startSseOnlyServer(): Promise<{
  url: string;
  calls: FakeToolCall[];
  sessions: number;
  openStreams: () => number;
}> {
  const calls: FakeToolCall[] = [];
  const transports = new Map<string, SSEServerTransport>();
  const streams = new Set<ServerResponse>();
  const state = { url: '', calls, sessions: 0, openStreams: () => streams.size };
  const http = createHttpServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (req.method === 'GET' && url.pathname === '/mcp') {
      const transport = new SSEServerTransport('/messages', res);
      transports.set(transport.sessionId, transport);
      streams.add(res);
      res.on('close', () => streams.delete(res));
      state.sessions++;
      const server = new McpServer({ name: 'fake-mcp-sse', version: '1.0.0' });
      registerFakeTools(server, { onCall: (call) => calls.push(call) });
      void server.connect(transport);
      return;
    }
    const transport = transports.get(url.searchParams.get('sessionId') ?? '');
    if (req.method === 'POST' && url.pathname === '/messages' && transport) {
      void transport.handlePostMessage(req, res);
      return;
    }
    res.writeHead(405).end();
  });
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  cleanups.push(async () => {
    http.closeAllConnections();
    await new Promise((resolve) => http.close(resolve));
  });
  state.url = `http://127.0.0.1:${(http.address() as AddressInfo).port}/mcp`;
  return state;
}

describe('discover', () => {
  it('lists every tool across pages, with descriptions and schemas, once per connection', async () => {
    const http = await startHttp({ pageSize: 2, extraTools: 3 });
    const { gateway } = startGateway();
    const server = httpServer(http.url);

    const tools = await gateway.discover(PROJECT, server);
    expect([...tools.keys()]).toEqual([...FAKE_TOOL_NAMES, 'extra_0', 'extra_1', 'extra_2']);
    for (const [name, tool] of tools) {
      // The gateway falls back to the name when a server gives no description.
      expect(tool.description).not.toBe(name);
      expect(tool.description.length).toBeGreaterThan(0);
      expect(tool.inputSchema).toMatchObject({ type: 'object' });
    }
    expect(tools.get('lookup')).toEqual({
      description: 'Looks up a key. Refuses callers whose credential is not the expected one.',
      inputSchema: expect.objectContaining({
        properties: { key: { type: 'string' } },
        required: ['key'],
      }) as unknown,
    });
    expect(tools.get('extra_2')?.description).toBe('Filler tool 2.');
    expect(countOf(http, 'initialize')).toBe(1);
    expect(countOf(http, 'tools/list')).toBe(5);

    const again = await gateway.discover(PROJECT, server);
    expect([...again.keys()]).toEqual([...tools.keys()]);
    expect(countOf(http, 'initialize')).toBe(1);
    expect(countOf(http, 'tools/list')).toBe(5);
  });
});

describe('discover of a server that lacks a declared tool', () => {
  // Regression (issue 12, item 15): nothing told the operator a declared tool was missing.
  it('warns once per connection, naming the tools the server does not offer', async () => {
    const http = await startHttp({});
    const { gateway, logs } = startGateway();
    const base = httpServer(http.url);
    const server = GatewayServer.parse({
      ...base,
      tools: [...base.tools, { name: 'ghost', risk: 'read' }],
    });

    const tools = await gateway.discover(PROJECT, server);
    expect(tools.has('ghost')).toBe(false);
    await gateway.discover(PROJECT, server);
    const warned = logs.filter(
      (l) => l.msg === 'mcp server does not offer tools the gateway contract declares',
    );
    expect(warned).toMatchObject([
      { level: 40, projectId: PROJECT, server: 'fake', tools: ['ghost'] },
    ]);
  });

  it('warns of nothing when the server has every declared tool', async () => {
    const http = await startHttp({});
    const { gateway, logs } = startGateway();
    await gateway.discover(PROJECT, httpServer(http.url));
    expect(logs.filter((l) => l.level === 40)).toEqual([]);
  });
});

describe('call over streamable HTTP', () => {
  it('sends the bearer token resolved from a secret: header ref, and logs no credential', async () => {
    const http = await startHttp({ token: TOKEN });
    const { gateway, secrets, rawLogs } = startGateway();
    secrets.set(`${PROJECT} secret:mcp-auth`, `Bearer ${TOKEN}`);
    const server = httpServer(http.url, { Authorization: 'secret:mcp-auth' });

    const result = await gateway.call(PROJECT, server, lookup('k1'));
    expect(textOf(result)).toBe('value of k1');
    expect(result.isError).toBeFalsy();
    expect(http.calls).toEqual([{ tool: 'lookup', arguments: { key: 'k1' }, credential: TOKEN }]);
    expect(http.requests.length).toBeGreaterThan(0);
    expect(http.requests.every((r) => r.headers.authorization === `Bearer ${TOKEN}`)).toBe(true);
    expect(gateway.credentialRefs(server)).toEqual(['secret:mcp-auth']);
    expect(rawLogs.join('')).not.toContain(TOKEN);
  });

  it('answers TOOL_TIMEOUT, maybe sent, for a call slower than its timeout, and keeps the connection', async () => {
    const http = await startHttp({});
    const { gateway } = startGateway();
    const server = httpServer(http.url);

    const error = await errorOf(
      gateway.call(PROJECT, server, {
        tool: 'slow',
        arguments: { ms: 20_000 },
        timeoutMs: 200,
        idempotent: true,
      }),
    );
    expect(error).toBeInstanceOf(ToolCallError);
    expect(error).toMatchObject({ code: 'TOOL_TIMEOUT', maybeSent: true });
    // Made once, not retried although it is a read, and the server was told to stop.
    expect(http.calls).toEqual([
      { tool: 'slow', arguments: { ms: 20_000 }, credential: undefined },
    ]);
    await waitFor(() => countOf(http, 'notifications/cancelled') === 1, {
      what: 'the cancellation',
    });

    expect(textOf(await gateway.call(PROJECT, server, lookup('after')))).toBe('value of after');
    expect(countOf(http, 'initialize')).toBe(1);
  });

  it('answers TOOL_SERVER_UNAVAILABLE, not sent, for a closed port, and connects once it is up', async () => {
    const http = await startHttp({});
    await http.close();
    const { gateway } = startGateway();
    const server = httpServer(http.url);

    const error = await errorOf(gateway.call(PROJECT, server, restartService('api')));
    expect(error).toBeInstanceOf(ToolCallError);
    expect(error).toMatchObject({ code: 'TOOL_SERVER_UNAVAILABLE', maybeSent: false });
    await expect(gateway.discover(PROJECT, server)).rejects.toMatchObject({
      code: 'TOOL_SERVER_UNAVAILABLE',
      maybeSent: false,
    });

    // Listening again on the same port: the failed connection was not kept in the pool.
    await http.restart();
    expect(textOf(await gateway.call(PROJECT, server, restartService('api')))).toBe(
      'restarted api',
    );
    expect(http.calls).toEqual([
      { tool: 'restart', arguments: { service: 'api' }, credential: undefined },
    ]);
  });
});

describe('pooling', () => {
  it('gives each project its own connection with its own token, and reuses it', async () => {
    const http = await startHttp({ token: TOKEN, requireAuth: false });
    const { gateway, secrets } = startGateway();
    secrets.set(`${PROJECT} secret:mcp-auth`, `Bearer ${TOKEN}`);
    secrets.set(`${OTHER} secret:mcp-auth`, `Bearer ${OTHER_TOKEN}`);
    const server = httpServer(http.url, { Authorization: 'secret:mcp-auth' });

    await gateway.call(PROJECT, server, lookup('a1'));
    await gateway.call(OTHER, server, lookup('b1'));
    expect(countOf(http, 'initialize')).toBe(2);
    await Promise.all([
      gateway.call(PROJECT, server, lookup('a2')),
      gateway.call(PROJECT, server, lookup('a3')),
    ]);
    await gateway.call(OTHER, server, lookup('b2'));
    expect(countOf(http, 'initialize')).toBe(2);
    expect(http.sessionCount()).toBe(2);

    const byKey = Object.fromEntries(
      http.calls.map((call) => [String(call.arguments['key']), call.credential]),
    );
    expect(byKey).toEqual({
      a1: TOKEN,
      b1: OTHER_TOKEN,
      a2: TOKEN,
      a3: TOKEN,
      b2: OTHER_TOKEN,
    });
    const initializeTokens = http.requests
      .filter((r) => RpcRequest.safeParse(r.body).data?.method === 'initialize')
      .map((r) => r.headers.authorization);
    expect(initializeTokens).toEqual([`Bearer ${TOKEN}`, `Bearer ${OTHER_TOKEN}`]);

    // A rotated secret: a new connection with the new token; the other project's stays.
    const ROTATED = 'upstream-token-rotated-9a8b7c';
    secrets.set(`${PROJECT} secret:mcp-auth`, `Bearer ${ROTATED}`);
    await gateway.call(PROJECT, server, lookup('a4'));
    await gateway.call(OTHER, server, lookup('b3'));
    expect(countOf(http, 'initialize')).toBe(3);
    expect(http.calls.slice(-2).map((call) => call.credential)).toEqual([ROTATED, OTHER_TOKEN]);
  });

  it('never shares a connection between projects, even with the same credential', async () => {
    const http = await startHttp({});
    const { gateway } = startGateway();
    const server = httpServer(http.url);

    await gateway.call(PROJECT, server, lookup('a'));
    await gateway.call(OTHER, server, lookup('b'));
    const sessions = methodsSeen(http)
      .filter((m) => m.method === 'tools/call')
      .map((m) => m.sessionId);
    expect(countOf(http, 'initialize')).toBe(2);
    expect(new Set(sessions).size).toBe(2);
  });

  it('opens a new connection for a rotated secret and closes the old one', async () => {
    const { gateway, secrets } = startGateway();
    const { server, logPath } = stdioServer({ FAKE_MCP_TOKEN: 'secret:stdio-token' });
    secrets.set(`${PROJECT} env:FAKE_MCP_LOG`, logPath);
    secrets.set(`${PROJECT} secret:stdio-token`, STDIO_TOKEN);

    await gateway.call(PROJECT, server, lookup('before'));
    await gateway.call(PROJECT, server, lookup('again'));
    const ROTATED = 'stdio-token-rotated-77e1f0';
    secrets.set(`${PROJECT} secret:stdio-token`, ROTATED);
    await gateway.call(PROJECT, server, lookup('after'));

    const [before, again, after] = readStdioCalls(logPath);
    expect(before).toMatchObject({ arguments: { key: 'before' }, credential: STDIO_TOKEN });
    expect(again).toMatchObject({ arguments: { key: 'again' }, pid: before?.pid });
    expect(after).toMatchObject({ arguments: { key: 'after' }, credential: ROTATED });
    expect(after?.pid).not.toBe(before?.pid);
    const oldPid = before!.pid;
    await waitFor(() => !isAlive(oldPid), { what: `the old server (pid ${oldPid}) to exit` });
    expect(isAlive(after!.pid)).toBe(true);
  });

  it('lets a call in flight on the superseded connection finish before closing it', async () => {
    const { gateway, secrets } = startGateway();
    const { server, logPath } = stdioServer({ FAKE_MCP_TOKEN: 'secret:stdio-token' });
    secrets.set(`${PROJECT} env:FAKE_MCP_LOG`, logPath);
    secrets.set(`${PROJECT} secret:stdio-token`, STDIO_TOKEN);

    // The slow call lasts until the test releases it, however long the new server takes to
    // start on a loaded machine.
    const release = `${logPath}.release`;
    const slow = gateway.call(PROJECT, server, {
      tool: 'slow',
      arguments: { ms: 120_000, releaseFile: release },
      timeoutMs: 150_000,
      idempotent: false,
    });
    await waitFor(() => readStdioCalls(logPath).length === 1 || undefined, {
      what: 'the slow call',
    });
    const oldPid = readStdioCalls(logPath)[0]!.pid;
    secrets.set(`${PROJECT} secret:stdio-token`, 'stdio-token-rotated-31c4aa');
    await gateway.call(PROJECT, server, lookup('meanwhile'));
    expect(isAlive(oldPid)).toBe(true);
    writeFileSync(release, '');
    expect(textOf(await slow)).toBe('done');
    await waitFor(() => !isAlive(oldPid), { what: `the old server (pid ${oldPid}) to exit` });
  });
});

describe('reconnecting', () => {
  it('replaces a session the restarted server forgot (404), making a read and a write once each', async () => {
    const http = await startHttp({});
    const { gateway } = startGateway();
    const server = httpServer(http.url);

    await gateway.call(PROJECT, server, lookup('before'));
    await http.restart();
    expect(textOf(await gateway.call(PROJECT, server, lookup('after')))).toBe('value of after');
    await http.restart();
    expect(textOf(await gateway.call(PROJECT, server, restartService('api')))).toBe(
      'restarted api',
    );

    expect(http.calls.map((call) => [call.tool, call.arguments])).toEqual([
      ['lookup', { key: 'before' }],
      ['lookup', { key: 'after' }],
      ['restart', { service: 'api' }],
    ]);
    // Each call after a restart went out first on the forgotten session, which the server
    // refused with 404 before MCP saw it, then once on a new session.
    const sessions = methodsSeen(http)
      .filter((m) => m.method === 'tools/call')
      .map((m) => m.sessionId);
    expect(sessions).toHaveLength(5);
    const [first, second, third] = [sessions[0], sessions[2], sessions[4]];
    expect(new Set([first, second, third]).size).toBe(3);
    expect(sessions).toEqual([first, first, second, second, third]);
    expect(countOf(http, 'initialize')).toBe(3);
  });

  it('does not repeat a write whose request failed with fetch failed, and says it may have been sent', async () => {
    const http = await startHttp({});
    const proxy = await startCuttingProxy(http.port);
    const { gateway } = startGateway();
    const server = httpServer(proxy.url);
    await gateway.call(PROJECT, server, lookup('warm'));

    proxy.armCut();
    const error = await errorOf(gateway.call(PROJECT, server, restartService('api')));
    expect(error).toBeInstanceOf(ToolCallError);
    expect(error).toMatchObject({
      code: 'TOOL_SERVER_UNAVAILABLE',
      maybeSent: true,
      cause: { message: 'fetch failed', cause: { code: 'UND_ERR_SOCKET' } },
    });
    // The server did act: repeating it would have restarted the service twice.
    expect(http.calls.filter((call) => call.tool === 'restart')).toHaveLength(1);

    // The same failure on a read is retried once, on a new connection.
    proxy.armCut();
    expect(textOf(await gateway.call(PROJECT, server, lookup('read')))).toBe('value of read');
    expect(http.calls.map((call) => call.arguments['key'] ?? call.arguments['service'])).toEqual([
      'warm',
      'api',
      'read',
      'read',
    ]);
    expect(countOf(http, 'initialize')).toBe(3);
  });
});

describe('HTTP+SSE fallback', () => {
  // Regression: the streamable attempt's failed initialize closed the client, which marked the
  // connection closed; every call then reconnected twice, leaked both SSE clients and failed
  // with TOOL_SERVER_UNAVAILABLE "closed the connection".
  it('calls a server that refuses the streamable POST over HTTP+SSE, on one connection', async () => {
    const sse = await startSseOnlyServer();
    const { gateway, secrets } = startGateway();
    secrets.set(`${PROJECT} secret:mcp-auth`, `Bearer ${TOKEN}`);
    const server = httpServer(sse.url, { Authorization: 'secret:mcp-auth' });

    expect(textOf(await gateway.call(PROJECT, server, lookup('k1')))).toBe('value of k1');
    expect(textOf(await gateway.call(PROJECT, server, lookup('k2')))).toBe('value of k2');
    expect(sse.calls).toEqual([
      { tool: 'lookup', arguments: { key: 'k1' }, credential: TOKEN },
      { tool: 'lookup', arguments: { key: 'k2' }, credential: TOKEN },
    ]);
    expect(sse.sessions).toBe(1);
    expect(sse.openStreams()).toBe(1);

    await gateway.close();
    await waitFor(() => sse.openStreams() === 0, { what: 'the event stream to close' });
  });
});

describe('call over stdio', () => {
  it('starts the server with its credential in the env, and starts a new one after it dies', async () => {
    const { gateway, secrets } = startGateway();
    const { server, logPath } = stdioServer({ FAKE_MCP_TOKEN: 'secret:stdio-token' });
    secrets.set(`${PROJECT} env:FAKE_MCP_LOG`, logPath);
    secrets.set(`${PROJECT} secret:stdio-token`, STDIO_TOKEN);

    expect(textOf(await gateway.call(PROJECT, server, lookup('k1')))).toBe('value of k1');
    const [first] = readStdioCalls(logPath);
    expect(first).toMatchObject({
      tool: 'lookup',
      arguments: { key: 'k1' },
      credential: STDIO_TOKEN,
    });
    const pid = first!.pid;
    process.kill(pid, 'SIGKILL');
    await waitFor(() => !isAlive(pid), { what: `the server (pid ${pid}) to die` });

    expect(textOf(await gateway.call(PROJECT, server, lookup('k2')))).toBe('value of k2');
    const calls = readStdioCalls(logPath);
    expect(calls).toHaveLength(2);
    expect(calls[1]).toMatchObject({ arguments: { key: 'k2' }, credential: STDIO_TOKEN });
    expect(calls[1]?.pid).not.toBe(pid);
  });

  it("logs the server's stderr with its credential redacted", async () => {
    const { gateway, secrets, logs, rawLogs } = startGateway();
    const { server, logPath } = stdioServer({
      FAKE_MCP_TOKEN: 'secret:stdio-token',
      FAKE_MCP_CARELESS: 'env:FAKE_MCP_CARELESS',
    });
    secrets.set(`${PROJECT} env:FAKE_MCP_LOG`, logPath);
    secrets.set(`${PROJECT} env:FAKE_MCP_CARELESS`, '1');
    secrets.set(`${PROJECT} secret:stdio-token`, STDIO_TOKEN);

    await gateway.call(PROJECT, server, lookup('k1'));
    const line = await waitFor(() => logs.find((l) => l.msg === 'mcp server stderr'), {
      what: 'the stderr log line',
    });
    expect(line).toMatchObject({
      level: 30,
      projectId: PROJECT,
      server: 'local',
      stderr: 'starting with token [REDACTED]',
    });
    expect(rawLogs.join('')).not.toContain(STDIO_TOKEN);
  });
});

describe('close', () => {
  it('closes every connection: each stdio server exits', async () => {
    const http = await startHttp({});
    const { gateway, secrets } = startGateway();
    const { server, logPath } = stdioServer({ FAKE_MCP_TOKEN: 'secret:stdio-token' });
    for (const project of [PROJECT, OTHER]) {
      secrets.set(`${project} env:FAKE_MCP_LOG`, logPath);
      secrets.set(`${project} secret:stdio-token`, `${STDIO_TOKEN}-${project}`);
      await gateway.call(project, server, lookup(project));
    }
    await gateway.call(PROJECT, httpServer(http.url), lookup('http'));
    const pids = readStdioCalls(logPath).map((call) => call.pid);
    expect(new Set(pids).size).toBe(2);
    expect(pids.every(isAlive)).toBe(true);

    await gateway.close();
    await waitFor(() => !pids.some(isAlive), { what: 'every stdio server to exit' });
  });
});
