import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import {
  StreamableHTTPClientTransport,
  StreamableHTTPError,
} from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CallToolResultSchema, ErrorCode, McpError } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startMcpHttpServer, type McpHttpServer } from './mcpHttpServer.ts';
import {
  FAKE_TOOL_NAMES,
  INJECTION_TEXT,
  mcpStdioServerCommand,
  readStdioCalls,
} from './mcpTools.ts';

/** Closers for whatever a test opened, run after it, newest first. */
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function textOf(result: unknown): string {
  const { content } = CallToolResultSchema.parse(result);
  return content.map((part) => (part.type === 'text' ? part.text : '')).join('');
}

function isErrorOf(result: unknown): boolean {
  return CallToolResultSchema.parse(result).isError === true;
}

async function listAllTools(client: Client): Promise<{ names: string[]; pages: number[] }> {
  const names: string[] = [];
  const pages: number[] = [];
  let cursor: string | undefined;
  do {
    const page = await client.listTools(cursor === undefined ? {} : { cursor });
    names.push(...page.tools.map((tool) => tool.name));
    pages.push(page.tools.length);
    cursor = page.nextCursor;
  } while (cursor !== undefined);
  return { names, pages };
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('the stdio fake MCP server', () => {
  let dir: string;
  let logPath: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'awooop-mcp-'));
    logPath = join(dir, 'calls.jsonl');
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  async function connect(env: Record<string, string>): Promise<{ client: Client; pid: number }> {
    // Only a few safe variables are inherited (getDefaultEnvironment); ours are added to them.
    const transport = new StdioClientTransport({
      ...mcpStdioServerCommand(),
      env: { FAKE_MCP_LOG: logPath, ...env },
    });
    const client = new Client({ name: 'fake-test', version: '1.0.0' });
    await client.connect(transport);
    const pid = transport.pid;
    if (pid === null) throw new Error('no server process');
    cleanups.push(async () => {
      await client.close();
      expect(isAlive(pid)).toBe(false);
    });
    return { client, pid };
  }

  it('lists the fake tools in one page', async () => {
    const { client } = await connect({ FAKE_MCP_EXTRA_TOOLS: '2' });
    const page = await client.listTools();
    expect(page.tools.map((tool) => tool.name)).toEqual([...FAKE_TOOL_NAMES, 'extra_0', 'extra_1']);
    expect(page.nextCursor).toBeUndefined();
  });

  it('answers lookup for the expected token, refuses another, and logs each call', async () => {
    const right = await connect({ FAKE_MCP_TOKEN: 'tok-a', FAKE_MCP_EXPECTED_TOKEN: 'tok-a' });
    const wrong = await connect({ FAKE_MCP_TOKEN: 'tok-b', FAKE_MCP_EXPECTED_TOKEN: 'tok-a' });

    const ok = await right.client.callTool({ name: 'lookup', arguments: { key: 'k1' } });
    expect(textOf(ok)).toBe('value of k1');
    expect(isErrorOf(ok)).toBe(false);
    const refused = await wrong.client.callTool({ name: 'lookup', arguments: { key: 'k2' } });
    expect(textOf(refused)).toBe('unauthorized');
    expect(isErrorOf(refused)).toBe(true);

    expect(readStdioCalls(logPath).slice(-2)).toEqual([
      { tool: 'lookup', arguments: { key: 'k1' }, credential: 'tok-a', pid: right.pid },
      { tool: 'lookup', arguments: { key: 'k2' }, credential: 'tok-b', pid: wrong.pid },
    ]);
  });

  it('leaks the credential it was started with', async () => {
    const { client } = await connect({ FAKE_MCP_TOKEN: 'sekrit-123' });
    expect(textOf(await client.callTool({ name: 'leak', arguments: {} }))).toBe(
      'token is sekrit-123',
    );
  });
});

describe('the HTTP fake MCP server', () => {
  async function start(options: Parameters<typeof startMcpHttpServer>[0]): Promise<McpHttpServer> {
    const server = await startMcpHttpServer(options);
    cleanups.push(() => server.close());
    return server;
  }

  async function connect(url: string, token?: string): Promise<Client> {
    const transport = new StreamableHTTPClientTransport(new URL(url), {
      requestInit: token === undefined ? {} : { headers: { authorization: `Bearer ${token}` } },
      // The old session's GET stream is dropped on restart; don't retry it in the background.
      reconnectionOptions: {
        initialReconnectionDelay: 10,
        maxReconnectionDelay: 10,
        reconnectionDelayGrowFactor: 1,
        maxRetries: 0,
      },
    });
    const client = new Client({ name: 'fake-test', version: '1.0.0' });
    client.onerror = () => {};
    await client.connect(transport);
    cleanups.push(() => client.close());
    return client;
  }

  it('pages tools/list by pageSize and lists every tool across the pages', async () => {
    const server = await start({ pageSize: 2, extraTools: 3 });
    const client = await connect(server.url);

    const first = await client.listTools();
    expect(first.tools).toHaveLength(2);
    expect(first.nextCursor).toBeDefined();
    const { names, pages } = await listAllTools(client);
    expect(names).toEqual([...FAKE_TOOL_NAMES, 'extra_0', 'extra_1', 'extra_2']);
    expect(pages).toEqual([2, 2, 2, 2, 2]);
    await expect(client.listTools({ cursor: 'nonsense' })).rejects.toMatchObject({
      code: ErrorCode.InvalidParams,
    });
  });

  it('answers lookup with the bearer token and records the call with it', async () => {
    const server = await start({ token: 'secret' });
    const client = await connect(server.url, 'secret');

    const ok = await client.callTool({ name: 'lookup', arguments: { key: 'k1' } });
    expect(textOf(ok)).toBe('value of k1');
    expect(isErrorOf(ok)).toBe(false);
    expect(textOf(await client.callTool({ name: 'leak', arguments: {} }))).toBe('token is secret');
    expect(server.calls).toEqual([
      { tool: 'lookup', arguments: { key: 'k1' }, credential: 'secret' },
      { tool: 'leak', arguments: {}, credential: 'secret' },
    ]);
    expect(server.requests.every((r) => r.headers.authorization === 'Bearer secret')).toBe(true);
  });

  it('answers 401 before MCP to a request without the token', async () => {
    const server = await start({ token: 'secret' });
    const error: unknown = await connect(server.url, 'wrong').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(StreamableHTTPError);
    expect(error).toMatchObject({ code: 401 });
    expect(server.sessionCount()).toBe(0);
  });

  it('lets lookup refuse a wrong token itself when requireAuth is off', async () => {
    const server = await start({ token: 'secret', requireAuth: false });
    const client = await connect(server.url, 'wrong');
    const refused = await client.callTool({ name: 'lookup', arguments: { key: 'k' } });
    expect(textOf(refused)).toBe('unauthorized');
    expect(isErrorOf(refused)).toBe(true);
    expect(server.calls).toEqual([
      { tool: 'lookup', arguments: { key: 'k' }, credential: 'wrong' },
    ]);
  });

  it('answers the other tools as described', async () => {
    const server = await start({});
    const client = await connect(server.url);
    const call = async (name: string, args: Record<string, unknown> = {}) =>
      textOf(await client.callTool({ name, arguments: args }));

    expect(await call('injection')).toBe(INJECTION_TEXT);
    expect(await call('restart', { service: 'api' })).toBe('restarted api');
    expect(await call('delete_all')).toBe('deleted');
    expect(await call('slow', { ms: 20 })).toBe('done');
    expect(await call('big', { bytes: 100_000 })).toBe('x'.repeat(100_000));
    expect(server.calls.map((c) => c.tool)).toEqual([
      'injection',
      'restart',
      'delete_all',
      'slow',
      'big',
    ]);
    expect(server.calls[0]?.credential).toBeUndefined();
  });

  it('times a slow call out on the client with McpError RequestTimeout', async () => {
    const server = await start({});
    const client = await connect(server.url);
    const error: unknown = await client
      .callTool({ name: 'slow', arguments: { ms: 10_000 } }, undefined, { timeout: 50 })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(McpError);
    expect(error).toMatchObject({ code: ErrorCode.RequestTimeout });
  });

  it('fails an old session with 404 after restart, and serves a new client', async () => {
    const server = await start({ token: 'secret' });
    const old = await connect(server.url, 'secret');
    await old.callTool({ name: 'lookup', arguments: { key: 'before' } });
    expect(server.sessionCount()).toBe(1);

    await server.restart();
    expect(server.sessionCount()).toBe(0);
    const error: unknown = await old
      .callTool({ name: 'lookup', arguments: { key: 'after' } })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(StreamableHTTPError);
    expect(error).toMatchObject({
      code: 404,
      message: expect.stringContaining('Session not found') as unknown,
    });

    const fresh = await connect(server.url, 'secret');
    expect(textOf(await fresh.callTool({ name: 'lookup', arguments: { key: 'again' } }))).toBe(
      'value of again',
    );
    expect(server.calls.map((c) => c.arguments['key'])).toEqual(['before', 'again']);
  });

  it('stops listening on close', async () => {
    const server = await startMcpHttpServer({});
    await server.close();
    await expect(fetch(server.url, { method: 'POST' })).rejects.toThrow();
  });
});
