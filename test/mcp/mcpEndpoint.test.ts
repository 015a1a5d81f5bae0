import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CallToolResultSchema, LATEST_PROTOCOL_VERSION } from '@modelcontextprotocol/sdk/types.js';
import Koa from 'koa';
import type { AddressInfo } from 'node:net';
import type pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey } from '../../db/apiKeys.ts';
import { setMigrationState } from '../../db/migrationState.ts';
import { withProject } from '../../db/withProject.ts';
import { errorMiddleware } from '../../ingress/errorMiddleware.ts';
import { mcpEndpoint } from '../../ingress/mcpEndpoint.ts';
import { canonicalJson, sha256Hex } from '../../pipeline/contracts/canonicalJson.ts';
import { TenantFile } from '../../pipeline/contracts/tenantFile.ts';
import { startMcpHttpServer, type McpHttpServer } from '../fakes/mcpHttpServer.ts';
import { applyTestTenant, pipelineTenant } from '../../ops/fakes/pipelineTenant.ts';
import { runCli } from '../helpers/runCli.ts';
import { startPipeline, type Pipeline } from '../helpers/startPipeline.ts';
import { useTestDatabase } from '../helpers/testDatabase.ts';
import { useRedisPrefix } from '../helpers/useRedisPrefix.ts';

const db = useTestDatabase();
const prefix = useRedisPrefix();

const PROJECT = 'acme';
const OTHER = 'beta';
/** The upstream server's bearer token: the tenant's `secret:mcp-auth` is `Bearer <TOKEN>`. */
const TOKEN = 'fake-upstream-token-7f3a9c2e51';
/** Another project secret, sent as an argument, to see it kept out of records and results. */
const PASSWORD = 'pw-db-0123456789-hunter2';

let pipeline: Pipeline;
let mcp: McpHttpServer;
let owner: pg.Client;
let helperKey: string;
let opsKey: string;
let clientKey: string;
let betaHelperKey: string;

/** Closers for what a test opened, run after it, newest first. */
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/**
 * The pipeline test tenant plus the fake MCP server `fake` with a read `lookup`, a write
 * `restart`, a read `leak` nobody is granted and a read `ghost` the server does not have:
 * agent `helper` (flow default, read_only) is granted `lookup` and `ghost`; agent `ops` (flow ops, auto_remediate with write tools on) is granted
 * `restart` behind an approval.
 */
function tenantWithTools(projectId: string) {
  const base = pipelineTenant({
    projectId,
    telegramApiRoot: 'http://127.0.0.1:9/',
    lineBaseUrl: 'http://127.0.0.1:9/',
  });
  const t = base.tenant;
  const helper = t.agents.helper!;
  const tenant = TenantFile.parse({
    ...t,
    agents: {
      helper: { ...helper, tools: ['fake.lookup', 'fake.ghost'] },
      ops: {
        ...helper,
        description: 'Ops agent',
        safetyCeiling: 'write',
        tools: ['fake.restart'],
        flow: 'ops',
      },
    },
    mcpGateway: {
      servers: [
        {
          name: 'fake',
          contextDomain: 'general',
          environment: 'test',
          transport: {
            type: 'streamable_http',
            url: mcp.url,
            headers: { Authorization: 'secret:mcp-auth' },
            sseFallback: false,
          },
          tools: [
            { name: 'lookup', risk: 'read' },
            { name: 'restart', risk: 'write' },
            { name: 'leak', risk: 'read' },
            { name: 'ghost', risk: 'read' },
          ],
        },
      ],
      grants: [
        { agent: 'helper', tools: ['fake.lookup', 'fake.ghost'], environments: ['test'] },
        { agent: 'ops', tools: ['fake.restart'], environments: ['test'], requireApproval: true },
      ],
    },
    runtime: {
      ...t.runtime,
      flows: [...t.runtime.flows, { name: 'ops', mode: 'auto_remediate' }],
      features: { writeTools: true },
    },
  });
  return { tenant, artifacts: base.artifacts };
}

const awooop = (...args: string[]) =>
  runCli(['--actor', 'test:ci', ...args], { DATABASE_URL: db().url });

function mcpKey(projectId: string, agent: string) {
  return withProject(db().pool, projectId, (tx) =>
    createApiKey(tx, { projectId, name: `mcp-${agent}`, roles: ['mcp'], agent, actor: 'test' }),
  );
}

beforeAll(async () => {
  mcp = await startMcpHttpServer({ token: TOKEN });
  pipeline = await startPipeline({ pool: db().pool, prefix, workers: false });
  owner = await db().owner();
  for (const projectId of [PROJECT, OTHER]) {
    await applyTestTenant(
      { pool: db().pool, logger: pipeline.ctx.logger },
      tenantWithTools(projectId),
    );
    await pipeline.setSecret(projectId, 'mcp-auth', `Bearer ${TOKEN}`);
    await pipeline.setSecret(projectId, 'db-password', PASSWORD);
  }
  // The helper's key the way an operator makes one.
  const created = await awooop(
    'keys',
    'create',
    '--project',
    PROJECT,
    '--role',
    'mcp',
    '--agent',
    'helper',
  );
  expect(created.stderr).toContain('of agent helper');
  expect(created.code).toBe(0);
  helperKey = created.stdout.trim();
  opsKey = (await mcpKey(PROJECT, 'ops')).key;
  betaHelperKey = (await mcpKey(OTHER, 'helper')).key;
  clientKey = await pipeline.createKey(PROJECT);
});

afterAll(async () => {
  await pipeline?.close();
  await mcp?.close();
});

function endpoint(agent: string, projectId = PROJECT, base = pipeline.url) {
  return new URL(`${base}/v1/projects/${projectId}/agents/${agent}/mcp`);
}

async function connect(
  key: string,
  agent = 'helper',
  headers: Record<string, string> = {},
): Promise<Client> {
  const client = new Client({ name: 'external-client', version: '1.0.0' });
  await client.connect(
    new StreamableHTTPClientTransport(endpoint(agent), {
      requestInit: { headers: { authorization: `Bearer ${key}`, ...headers } },
    }),
  );
  cleanups.push(() => client.close());
  return client;
}

async function call(client: Client, name: string, args: Record<string, unknown> = {}) {
  const result = CallToolResultSchema.parse(await client.callTool({ name, arguments: args }));
  const text = result.content.map((part) => (part.type === 'text' ? part.text : '')).join('');
  return { text, isError: result.isError === true };
}

/** A raw JSON-RPC `initialize` POST, for the answers a client library would hide. */
function initialize(key: string | null, url = endpoint('helper')) {
  return fetch(url, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      ...(key === null ? {} : { authorization: `Bearer ${key}` }),
    },
    body: JSON.stringify({
      jsonrpc: '2.0',
      id: 1,
      method: 'initialize',
      params: {
        protocolVersion: LATEST_PROTOCOL_VERSION,
        capabilities: {},
        clientInfo: { name: 'raw', version: '1.0.0' },
      },
    }),
  });
}

/** The columns these tests read of a raw row; the rest are compared whole. */
type CallRow = {
  call_id: string;
  tool: string;
  risk: string | null;
  status: string;
  code: string;
  latency_ms: number;
  result_sha256: string | null;
  finished_at: Date | null;
};
type AuditRow = { subject: string; detail: Record<string, unknown> };

async function endpointRows(agent: string) {
  const { rows: calls } = await owner.query<CallRow>(
    `SELECT * FROM tool_calls WHERE via = 'mcp_endpoint' AND agent = $1 ORDER BY created_at`,
    [agent],
  );
  const { rows: audit } = await owner.query<AuditRow>(
    `SELECT * FROM audit_events WHERE chain = $1 ORDER BY project_id, seq`,
    [`mcp:${agent}`],
  );
  return { calls, audit };
}

function upstreamCallsOf(tool: string) {
  return mcp.calls.filter((c) => c.tool === tool);
}

describe('an agent MCP endpoint, through the SDK client', () => {
  // Regression (issue 12, item 15): a granted tool the server does not have (`ghost`) was
  // listed as "its server did not describe it", and every call of it failed.
  it('lists only the granted tool its server has, with its server description and schema', async () => {
    const client = await connect(helperKey);
    const { tools } = await client.listTools();
    expect(tools.map((t) => t.name)).toEqual(['fake__lookup']);
    expect(tools[0]!.description).toContain('Looks up a key');
    expect(tools[0]!.inputSchema.properties).toHaveProperty('key');
    expect(tools[0]!.annotations?.readOnlyHint).toBe(true);
  });

  it('calls the granted read tool with the tenant credential and returns the redacted result, recorded without any credential value', async () => {
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const client = await connect(helperKey, 'helper', {
      traceparent: `00-${traceId}-00f067aa0ba902b7-01`,
    });
    const result = await call(client, 'fake__lookup', { key: PASSWORD });
    expect(result.isError).toBe(false);
    expect(result.text).toContain('value of [REDACTED]');
    expect(result.text).toContain('trust="untrusted"');
    expect(result.text).not.toContain(PASSWORD);
    // The server was called once, with the token the secret ref resolved to.
    expect(upstreamCallsOf('lookup')).toEqual([
      { tool: 'lookup', arguments: { key: PASSWORD }, credential: TOKEN },
    ]);

    const { calls, audit } = await endpointRows('helper');
    expect(calls).toHaveLength(1);
    const row = calls[0]!;
    expect(row).toMatchObject({
      project_id: PROJECT,
      run_id: null,
      trace_id: traceId,
      via: 'mcp_endpoint',
      agent: 'helper',
      server: 'fake',
      tool: 'lookup',
      risk: 'read',
      arguments: { key: '[REDACTED]' },
      arguments_sha256: sha256Hex(
        canonicalJson({ tool: 'fake.lookup', arguments: { key: PASSWORD } }),
      ),
      credential_refs: ['secret:mcp-auth'],
      status: 'ok',
      code: null,
    });
    expect(row.latency_ms).toBeGreaterThanOrEqual(0);
    expect(row.result_sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(row.finished_at).not.toBeNull();
    const keyId = (
      await owner.query(`SELECT key_id FROM api_keys WHERE agent = 'helper' AND project_id = $1`, [
        PROJECT,
      ])
    ).rows[0].key_id;
    expect(audit).toHaveLength(1);
    expect(audit[0]).toMatchObject({
      project_id: PROJECT,
      actor: `mcp_key:${keyId}`,
      action: 'tool.call',
      subject: 'tool:fake.lookup',
      trace_id: traceId,
    });
    expect(audit[0]!.detail).toMatchObject({
      status: 'ok',
      call_id: row.call_id,
      via: 'mcp_endpoint',
    });

    const recorded = JSON.stringify([calls, audit]);
    for (const secret of [TOKEN, PASSWORD]) expect(recorded).not.toContain(secret);
  });

  it('refuses a tool the agent is not granted: the server never sees it, the refusal is recorded', async () => {
    const client = await connect(helperKey);
    const before = (await endpointRows('helper')).calls.length;
    const refused = await call(client, 'fake__leak');
    expect(refused.isError).toBe(true);
    expect(refused.text).toMatch(/^TOOL_NOT_GRANTED: /);
    const unknown = await call(client, 'nowhere__nothing');
    expect(unknown.isError).toBe(true);
    expect(unknown.text).toMatch(/^TOOL_UNKNOWN: /);
    expect(upstreamCallsOf('leak')).toEqual([]);
    const toolCalls = mcp.requests.filter(
      (r) => (r.body as { method?: string } | undefined)?.method === 'tools/call',
    );
    expect(toolCalls.map((r) => (r.body as { params: { name: string } }).params.name)).toEqual([
      'lookup',
    ]);

    const { calls, audit } = await endpointRows('helper');
    expect(calls.slice(before)).toMatchObject([
      { server: 'fake', tool: 'leak', risk: 'read', status: 'refused', code: 'TOOL_NOT_GRANTED' },
      { server: '', tool: 'nowhere__nothing', risk: null, status: 'refused', code: 'TOOL_UNKNOWN' },
    ]);
    expect(audit.slice(-2).map((a) => [a.subject, a.detail.status, a.detail.code])).toEqual([
      ['tool:fake.leak', 'refused', 'TOOL_NOT_GRANTED'],
      ['tool:nowhere__nothing', 'refused', 'TOOL_UNKNOWN'],
    ]);
    expect(JSON.stringify([calls, audit])).not.toContain(TOKEN);
  });

  it('never lists or makes a write an endpoint call could not make: approval needed, then a proposal, then the mode forbids it', async () => {
    const client = await connect(opsKey, 'ops');
    expect((await client.listTools()).tools).toEqual([]);
    const approval = await call(client, 'fake__restart', { service: 'db' });
    expect(approval).toMatchObject({ isError: true });
    expect(approval.text).toMatch(/^APPROVAL_REQUIRED: .*grant_requires_approval/);

    const setMode = (mode: 'suggest' | 'read_only') =>
      withProject(db().pool, PROJECT, (tx) =>
        setMigrationState(tx, { projectId: PROJECT, flow: 'ops', mode, canary: {}, actor: 'test' }),
      );
    await setMode('suggest');
    expect((await client.listTools()).tools).toEqual([]);
    expect((await call(client, 'fake__restart', { service: 'db' })).text).toMatch(
      /^PROPOSAL_ONLY: /,
    );
    await setMode('read_only');
    expect((await client.listTools()).tools).toEqual([]);
    expect((await call(client, 'fake__restart', { service: 'db' })).text).toMatch(
      /^MODE_FORBIDS: /,
    );

    expect(upstreamCallsOf('restart')).toEqual([]);
    const { calls } = await endpointRows('ops');
    expect(calls.map((c) => [c.tool, c.risk, c.status, c.code])).toEqual([
      ['restart', 'write', 'refused', 'APPROVAL_REQUIRED'],
      ['restart', 'write', 'refused', 'PROPOSAL_ONLY'],
      ['restart', 'write', 'refused', 'MODE_FORBIDS'],
    ]);
  });
});

describe('an agent MCP endpoint whose server refuses the gateway', () => {
  it('still lists the granted tools, and a call fails as TOOL_SERVER_UNAVAILABLE, recorded as an error', async () => {
    await pipeline.setSecret(OTHER, 'mcp-auth', 'Bearer not-the-upstream-token-42');
    const client = new Client({ name: 'external-client', version: '1.0.0' });
    await client.connect(
      new StreamableHTTPClientTransport(endpoint('helper', OTHER), {
        requestInit: { headers: { authorization: `Bearer ${betaHelperKey}` } },
      }),
    );
    cleanups.push(() => client.close());
    const { tools } = await client.listTools();
    // Unreachable, the server cannot say which tools it lacks: every granted one is listed.
    expect(tools.map((t) => [t.name, t.inputSchema])).toEqual([
      ['fake__lookup', { type: 'object' }],
      ['fake__ghost', { type: 'object' }],
    ]);
    const failed = await call(client, 'fake__lookup', { key: 'a' });
    expect(failed.isError).toBe(true);
    expect(failed.text).toMatch(/^TOOL_SERVER_UNAVAILABLE: /);
    const { rows } = await owner.query(
      `SELECT status, code, latency_ms FROM tool_calls WHERE project_id = $1`,
      [OTHER],
    );
    expect(rows).toMatchObject([{ status: 'error', code: 'TOOL_SERVER_UNAVAILABLE' }]);
  });
});

describe('who may open an agent MCP endpoint', () => {
  it('answers 401 to a missing or wrong key, and to another project’s key', async () => {
    for (const key of [null, 'awk_acme_not-a-real-key', betaHelperKey]) {
      const res = await initialize(key);
      expect(res.status).toBe(401);
      expect(res.headers.get('www-authenticate')).toBe('Bearer');
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('UNAUTHORIZED');
    }
    await expect(connect('awk_acme_wrong')).rejects.toThrow();
  });

  it('answers 403 to a key of another agent and to a key that is not an mcp key', async () => {
    const other = await initialize(opsKey);
    expect(other.status).toBe(403);
    expect(await other.json()).toMatchObject({ error: { code: 'WRONG_AGENT' } });
    const client = await initialize(clientKey);
    expect(client.status).toBe(403);
    expect(await client.json()).toMatchObject({ error: { code: 'FORBIDDEN' } });
  });

  it('answers 404 for an unknown project and 405 to GET', async () => {
    expect((await initialize(helperKey, endpoint('helper', 'nosuch'))).status).toBe(404);
    const get = await fetch(endpoint('helper'), {
      headers: { authorization: `Bearer ${helperKey}`, accept: 'text/event-stream' },
    });
    expect(get.status).toBe(405);
    expect(get.headers.get('allow')).toBe('POST');
  });

  it('keeps an mcp key out of the platform API', async () => {
    const res = await fetch(`${pipeline.url}/v1/projects/${PROJECT}/messages`, {
      method: 'POST',
      headers: { authorization: `Bearer ${helperKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ text: 'hello' }),
    });
    expect(res.status).toBe(403);
    expect(await res.json()).toMatchObject({ error: { code: 'FORBIDDEN' } });
  });

  it('answers 503 GATEWAY_UNAVAILABLE when the process has no gateway', async () => {
    const app = new Koa();
    app.use(errorMiddleware({ logger: pipeline.ctx.logger }));
    const router = mcpEndpoint({
      pool: db().pool,
      logger: pipeline.ctx.logger,
      secrets: pipeline.ctx.secrets,
      contracts: pipeline.ctx.contracts,
    });
    app.use(router.routes());
    const server = app.listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    cleanups.push(() => new Promise((r) => server.close(() => r())));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const res = await initialize(helperKey, endpoint('helper', PROJECT, base));
    expect(res.status).toBe(503);
    expect(await res.json()).toMatchObject({ error: { code: 'GATEWAY_UNAVAILABLE' } });
  });
});

describe('awooop keys create --role mcp', () => {
  it('names --agent when it is missing or not an active agent, and creates nothing', async () => {
    const before = (await owner.query('SELECT count(*)::int AS n FROM api_keys')).rows[0].n;
    const missing = await awooop('keys', 'create', '--project', PROJECT, '--role', 'mcp');
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('--agent: required with --role mcp');
    const ghost = await awooop(
      'keys',
      'create',
      '--project',
      PROJECT,
      '--role',
      'mcp',
      '--agent',
      'ghost',
    );
    expect(ghost.code).toBe(2);
    expect(ghost.stderr).toContain('--agent: "ghost" is not an active agent of acme');
    const mixed = await awooop(
      'keys',
      'create',
      '--project',
      PROJECT,
      '--role',
      'mcp',
      '--role',
      'client',
      '--agent',
      'helper',
    );
    expect(mixed.code).toBe(2);
    expect(mixed.stderr).toContain('--role: mcp cannot be combined');
    expect((await owner.query('SELECT count(*)::int AS n FROM api_keys')).rows[0].n).toBe(before);
  });
});
