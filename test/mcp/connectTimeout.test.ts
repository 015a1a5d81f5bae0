import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { GatewayServer } from '../../pipeline/contracts/mcpGatewayContract.ts';
import { createMcpGateway, type McpGateway } from '../../pipeline/mcp/createMcpGateway.ts';
import type { SecretResolver } from '../../pipeline/secrets/createSecretResolver.ts';

// Pins the bug where a server that hangs at connect held every caller for the MCP SDK's 60 s
// request default (and, past `initialize`, for ever), whatever the contract's timeout said.

/** Well under the SDK's 60 s default, and far above what the contract below allows. */
const NOT_THE_SDK_DEFAULT_MS = 30_000;
const CONTRACT_TIMEOUT_MS = 1000;

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const noSecrets: SecretResolver = {
  async resolve(_projectId, ref) {
    throw new Error(`no ${ref}`);
  },
  async knownValues() {
    return [];
  },
};

function startGateway(): McpGateway {
  const gateway = createMcpGateway({ secrets: noSecrets, logger: pino({ level: 'silent' }) });
  cleanups.push(() => gateway.close());
  return gateway;
}

/** An HTTP server that takes every request and never answers it: a peer hung at connect. */
async function startHungHttp(): Promise<{ url: string; requests: () => number }> {
  let requests = 0;
  const held: ServerResponse[] = [];
  const server: Server = createServer((_req: IncomingMessage, res: ServerResponse) => {
    requests += 1;
    held.push(res);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanups.push(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}/mcp`, requests: () => requests };
}

function server(transport: GatewayServer['transport']): GatewayServer {
  return GatewayServer.parse({
    name: 'hung',
    contextDomain: 'general',
    environment: 'test',
    transport,
    tools: [{ name: 'lookup', risk: 'read', timeoutMs: CONTRACT_TIMEOUT_MS }],
  });
}

/** How long `promise` took to reject, and with what. */
async function timedRejection(promise: Promise<unknown>): Promise<{ ms: number; error: unknown }> {
  const started = performance.now();
  try {
    await promise;
  } catch (error) {
    return { ms: performance.now() - started, error };
  }
  throw new Error('expected a rejection');
}

describe('a server that hangs at connect', () => {
  it('fails discovery over streamable HTTP with TOOL_SERVER_UNAVAILABLE within the contract timeout', async () => {
    const hung = await startHungHttp();
    const gateway = startGateway();
    const s = server({ type: 'streamable_http', url: hung.url, headers: {}, sseFallback: true });

    const { ms, error } = await timedRejection(gateway.discover('acme', s));
    expect(error).toMatchObject({ code: 'TOOL_SERVER_UNAVAILABLE', maybeSent: false });
    expect(hung.requests()).toBeGreaterThan(0);
    expect(ms).toBeLessThan(NOT_THE_SDK_DEFAULT_MS);
  }, 60_000);

  it('fails a tool call, unsent, within the call timeout when the connect hangs', async () => {
    const hung = await startHungHttp();
    const gateway = startGateway();
    const s = server({ type: 'streamable_http', url: hung.url, headers: {}, sseFallback: true });

    const { ms, error } = await timedRejection(
      gateway.call('acme', s, {
        tool: 'lookup',
        arguments: {},
        timeoutMs: CONTRACT_TIMEOUT_MS,
        idempotent: true,
      }),
    );
    expect(error).toMatchObject({ code: 'TOOL_SERVER_UNAVAILABLE', maybeSent: false });
    expect(ms).toBeLessThan(NOT_THE_SDK_DEFAULT_MS);
  }, 60_000);

  it('fails discovery of a stdio server that never answers initialize within the bound given', async () => {
    const gateway = createMcpGateway({ secrets: noSecrets, logger: pino({ level: 'silent' }) });
    const dir = await mkdtemp(join(tmpdir(), 'awooop-hung-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const pidFile = join(dir, 'pid');
    // A process that reads nothing and writes nothing: started, never initialized. It keeps
    // running when its stdin ends, as a hung server would, so only a kill stops it.
    const s = server({
      type: 'stdio',
      command: process.execPath,
      args: [
        '-e',
        `require('fs').writeFileSync(${JSON.stringify(pidFile)}, String(process.pid)); process.stdin.resume(); process.stdin.on('end', () => {}); setInterval(() => {}, 1000)`,
      ],
      env: {},
    });

    const { ms, error } = await timedRejection(
      gateway.discover('acme', s, { timeoutMs: CONTRACT_TIMEOUT_MS }),
    );
    expect(error).toMatchObject({ code: 'TOOL_SERVER_UNAVAILABLE', maybeSent: false });
    expect(ms).toBeLessThan(NOT_THE_SDK_DEFAULT_MS);

    // Closing the gateway at once (a worker shutting down) still ends the child it started.
    const pid = Number(await readFile(pidFile, 'utf8'));
    await gateway.close();
    expect(isRunning(pid)).toBe(false);
  }, 60_000);
});

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
