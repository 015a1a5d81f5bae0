import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import type pg from 'pg';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listRunSteps } from '../../db/runSteps.ts';
import { getRun } from '../../db/runs.ts';
import { withProject } from '../../db/withProject.ts';
import { runToolLoop } from '../../pipeline/agent/runToolLoop.ts';
import { decideApproval } from '../../pipeline/approvals/decideApproval.ts';
import { loadPinnedContracts } from '../../pipeline/runs/loadPinnedContracts.ts';
import type { MigrationMode } from '../../pipeline/contracts/common.ts';
import { TenantFile } from '../../pipeline/contracts/tenantFile.ts';
import { telegramCallbackQuery, telegramUpdate } from '../../ops/fakes/channelPayloads.ts';
import { startLineServer } from '../fakes/lineServer.ts';
import { startMcpHttpServer, type McpHttpServer } from '../fakes/mcpHttpServer.ts';
import { INJECTION_TEXT, mcpStdioServerCommand, readStdioCalls } from '../fakes/mcpTools.ts';
import { startModelServer, type RecordedRequest } from '../fakes/modelServer.ts';
import { startTelegramServer } from '../../ops/fakes/telegramServer.ts';
import {
  applyTestTenant,
  APPROVALS_ACCOUNT,
  pipelineTenant,
  TEST_SECRETS,
} from '../../ops/fakes/pipelineTenant.ts';
import { startPipeline, type Pipeline } from '../helpers/startPipeline.ts';
import { useTestDatabase } from '../helpers/testDatabase.ts';
import { TEST_REDIS_URL, useRedisPrefix } from '../helpers/useRedisPrefix.ts';
import { waitFor } from '../helpers/waitFor.ts';
import { projectNode } from '../../ops/projectNode.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const db = useTestDatabase();
const prefix = useRedisPrefix();

/** Credentials of the MCP servers: they must never appear outside the secrets table. */
/** The Telegram user id of the tenants' one approver (an ACL member with the operator role). */
const APPROVER = 880_001;
const STDIO_TOKEN = 'stdio-mcp-token-5f2c9e81d7a4b36';
const HTTP_TOKEN = 'http-mcp-token-9a1e7c3b5d2f480';

let telegram: Awaited<ReturnType<typeof startTelegramServer>>;
let line: Awaited<ReturnType<typeof startLineServer>>;
let model: Awaited<ReturnType<typeof startModelServer>>;
let http: McpHttpServer;
let pipeline: Pipeline;
let owner: pg.Client;
let logDir: string;
let stdioLog: string;
const logLines: string[] = [];
const children: ChildProcess[] = [];

/** A tenant whose agent has tools on a stdio server and a streamable-HTTP server. */
function toolTenant(projectId: string, mode: MigrationMode, { writeTools = true } = {}) {
  const base = pipelineTenant({
    projectId,
    telegramApiRoot: telegram.apiRoot,
    lineBaseUrl: line.baseUrl,
    modelBaseUrl: model.url,
    mode,
    approvers: [String(APPROVER)],
  });
  const stdio = mcpStdioServerCommand();
  const tenant = TenantFile.parse({
    ...base.tenant,
    agents: {
      helper: {
        ...base.tenant.agents.helper,
        safetyCeiling: 'destructive',
        maxSteps: 6,
        tools: [
          'ops.lookup',
          'ops.leak',
          'ops.injection',
          'ops.restart',
          'ops.delete_all',
          'ops.slow',
          'web.lookup',
          'web.restart',
        ],
      },
    },
    mcpGateway: {
      servers: [
        {
          name: 'ops',
          contextDomain: 'general',
          environment: 'prod',
          transport: {
            type: 'stdio',
            command: stdio.command,
            args: stdio.args,
            env: {
              FAKE_MCP_TOKEN: 'secret:mcp-stdio',
              FAKE_MCP_EXPECTED_TOKEN: 'secret:mcp-stdio',
              FAKE_MCP_LOG: 'env:FAKE_MCP_LOG',
              FAKE_MCP_CARELESS: 'env:FAKE_MCP_CARELESS',
            },
          },
          tools: [
            { name: 'lookup', risk: 'read' },
            { name: 'leak', risk: 'read' },
            { name: 'injection', risk: 'read' },
            { name: 'restart', risk: 'write' },
            { name: 'delete_all', risk: 'destructive' },
            // declared a write here (the contract's risk class is what governs), so a worker
            // killed during it shows a write is never repeated
            { name: 'slow', risk: 'write' },
            { name: 'big', risk: 'read' },
          ],
        },
        {
          name: 'web',
          contextDomain: 'general',
          environment: 'prod',
          transport: {
            type: 'streamable_http',
            url: http.url,
            headers: { Authorization: 'secret:mcp-http' },
          },
          tools: [
            { name: 'lookup', risk: 'read' },
            { name: 'restart', risk: 'write' },
          ],
        },
        {
          name: 'infra',
          contextDomain: 'infra',
          environment: 'prod',
          transport: { type: 'streamable_http', url: http.url },
          tools: [{ name: 'lookup', risk: 'read' }],
        },
      ],
      grants: [
        {
          agent: 'helper',
          tools: ['ops.lookup', 'ops.leak', 'ops.injection', 'web.lookup'],
          environments: ['prod'],
        },
        {
          agent: 'helper',
          tools: ['ops.restart', 'ops.delete_all', 'ops.slow'],
          environments: ['prod'],
        },
        {
          agent: 'helper',
          tools: ['web.restart'],
          environments: ['prod'],
          requireApproval: true,
        },
      ],
    },
    runtime: { ...base.tenant.runtime, features: { writeTools } },
  });
  return { tenant, artifacts: base.artifacts };
}

/** The env variables the tenants' stdio server reads (as `env:` refs), allowed by the platform. */
const ENV_SECRETS = ['FAKE_MCP_LOG', 'FAKE_MCP_CARELESS'];

async function setUpProject(projectId: string, mode: MigrationMode, options = {}) {
  await applyTestTenant(
    { pool: db().pool, logger: pipeline.ctx.logger },
    toolTenant(projectId, mode, options),
    ENV_SECRETS,
  );
  for (const [name, value] of Object.entries(TEST_SECRETS))
    await pipeline.setSecret(projectId, name, value);
  await pipeline.setSecret(projectId, 'mcp-stdio', STDIO_TOKEN);
  await pipeline.setSecret(projectId, 'mcp-http', `Bearer ${HTTP_TOKEN}`);
}

beforeAll(async () => {
  logDir = mkdtempSync(join(tmpdir(), 'awooop-mcp-'));
  stdioLog = join(logDir, 'calls.jsonl');
  process.env.FAKE_MCP_LOG = stdioLog;
  process.env.FAKE_MCP_CARELESS = 'yes';
  // for the execute workers this file spawns
  process.env.AWOOOP_ENV_SECRETS = ENV_SECRETS.join(',');
  telegram = await startTelegramServer();
  line = await startLineServer();
  model = await startModelServer();
  http = await startMcpHttpServer({ token: HTTP_TOKEN });
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      logLines.push(chunk.toString('utf8'));
      done();
    },
  });
  pipeline = await startPipeline({
    pool: db().pool,
    sweeperPool: db().sweeperPool,
    prefix,
    logger: pino({ level: 'debug' }, sink),
    envSecrets: ENV_SECRETS,
  });
  owner = await db().owner();
  await setUpProject('tools', 'auto_remediate');
  await setUpProject('quiet', 'shadow');
  await setUpProject('advice', 'suggest');
  await setUpProject('nowrites', 'auto_remediate', { writeTools: false });
});

afterAll(async () => {
  for (const child of children) child.kill('SIGKILL');
  await pipeline?.close();
  await Promise.all([telegram?.close(), line?.close(), model?.close(), http?.close()]);
  delete process.env.FAKE_MCP_LOG;
  delete process.env.FAKE_MCP_CARELESS;
  delete process.env.AWOOOP_ENV_SECRETS;
  rmSync(logDir, { recursive: true, force: true });
});

/** A real `awooop worker execute` process on this file's database and Redis prefix. */
function spawnExecuteWorker(env: Record<string, string> = {}): ChildProcess {
  const child = spawn(projectNode(), ['ops/awooop.ts', 'worker', 'execute'], {
    cwd: ROOT,
    env: {
      ...process.env,
      DATABASE_URL: db().url,
      REDIS_URL: TEST_REDIS_URL,
      AWOOOP_REDIS_PREFIX: prefix,
      AWOOOP_SECRET_KEY: pipeline.secretKey.toString('hex'),
      AWOOOP_JOB_LOCK_MS: '2000',
      LOG_LEVEL: 'error',
      ...env,
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  children.push(child);
  return child;
}

/** SIGKILL, as a crash would, and wait until the process is gone. */
async function killWorker(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGKILL');
  await exited;
}

let nextUpdateId = 5000;
async function send(projectId: string, chatId: number, text: string) {
  const runsOfChat = async () =>
    (
      await owner.query<{ run_id: string }>(
        `SELECT run_id FROM runs WHERE project_id = $1 AND conversation_key LIKE $2
          ORDER BY run_seq DESC`,
        [projectId, `%/${chatId}`],
      )
    ).rows;
  const before = (await runsOfChat()).length;
  const res = await fetch(`${pipeline.url}/webhooks/telegram/${projectId}/tg`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'x-telegram-bot-api-secret-token': TEST_SECRETS['tg-webhook'],
    },
    body: JSON.stringify(telegramUpdate({ updateId: nextUpdateId++, chatId, text })),
  });
  expect(res.status).toBe(200);
  const run = await waitFor(
    async () => {
      const rows = await runsOfChat();
      return rows.length > before ? rows[0] : undefined;
    },
    { what: 'the run' },
  );
  return run.run_id;
}

async function runRow(runId: string) {
  const { rows } = await owner.query<{
    state: string;
    failure_code: string | null;
    output: { text: string; proposals?: unknown[] } | null;
  }>('SELECT state, failure_code, output FROM runs WHERE run_id = $1', [runId]);
  return rows[0]!;
}

function untilState(runId: string, states: string[]) {
  return waitFor(
    async () => {
      const row = await runRow(runId);
      return states.includes(row.state) ? row : undefined;
    },
    { what: `run ${runId} in ${states.join('/')}`, timeoutMs: 90_000 },
  );
}

async function toolCallRows(runId: string) {
  const { rows } = await owner.query<{
    server: string;
    tool: string;
    status: string;
    code: string | null;
    credential_refs: string[];
    arguments_sha256: string;
  }>(
    `SELECT server, tool, status, code, credential_refs, arguments_sha256
       FROM tool_calls WHERE run_id = $1 ORDER BY step_index, call_index`,
    [runId],
  );
  return rows;
}

const sentTo = (chatId: number) =>
  telegram.sent.filter((m) => String(m.chat_id) === String(chatId));
const toolNamesOffered = (request: RecordedRequest) =>
  ((request.body.tools as { function: { name: string } }[] | undefined) ?? []).map(
    (t) => t.function.name,
  );
const lastMessage = (request: RecordedRequest) => request.body.messages.at(-1)!;
const stdioCalls = (tool: string) => readStdioCalls(stdioLog).filter((c) => c.tool === tool);

describe('the tool loop', () => {
  it('calls a granted read tool over stdio and answers with its result', async () => {
    const before = model.requests.length;
    model.respondNext(
      { toolCalls: [{ id: 'call_1', name: 'ops__lookup', arguments: { key: 'disk' } }] },
      { content: 'The disk is fine.' },
    );
    const runId = await send('tools', 7001, 'how is the disk?');
    const row = await untilState(runId, ['COMPLETED', 'FAILED']);
    expect(row.state).toBe('COMPLETED');
    await waitFor(() => sentTo(7001).length === 1 || undefined, { what: 'the reply' });
    expect(sentTo(7001)[0]!.text).toBe('The disk is fine.');

    const requests = model.requests.slice(before);
    expect(requests).toHaveLength(2);
    // Only what this run may call is offered: no ungranted tool (ops.big), nothing of
    // another context domain (infra.lookup).
    expect(toolNamesOffered(requests[0]!).sort()).toEqual(
      [
        'ops__delete_all',
        'ops__injection',
        'ops__leak',
        'ops__lookup',
        'ops__restart',
        'ops__slow',
        'web__lookup',
        'web__restart',
      ].sort(),
    );
    const toolMessage = lastMessage(requests[1]!);
    expect(toolMessage.role).toBe('tool');
    expect(toolMessage.tool_call_id).toBe('call_1');
    expect(toolMessage.content).toContain('value of disk');
    expect(toolMessage.content).toContain('trust="untrusted"');

    const calls = stdioCalls('lookup');
    expect(calls).toHaveLength(1);
    expect(calls[0]!.arguments).toEqual({ key: 'disk' });
    expect(calls[0]!.credential).toBe(STDIO_TOKEN);
    const rows = await toolCallRows(runId);
    expect(rows).toEqual([
      expect.objectContaining({
        server: 'ops',
        tool: 'lookup',
        status: 'ok',
        credential_refs: ['env:FAKE_MCP_CARELESS', 'env:FAKE_MCP_LOG', 'secret:mcp-stdio'],
      }),
    ]);
    const steps = await owner.query<{ kind: string }>(
      'SELECT kind FROM run_steps WHERE run_id = $1 ORDER BY step_index',
      [runId],
    );
    expect(steps.rows.map((s) => s.kind)).toEqual(['model', 'tool', 'model']);
  });

  it('calls a read tool over streamable HTTP with the header credential', async () => {
    const seen = http.calls.length;
    model.respondNext(
      { toolCalls: [{ name: 'web__lookup', arguments: { key: 'cpu' } }] },
      { content: 'CPU is fine.' },
    );
    const runId = await send('tools', 7002, 'cpu?');
    expect((await untilState(runId, ['COMPLETED', 'FAILED'])).state).toBe('COMPLETED');
    const calls = http.calls.slice(seen);
    expect(calls).toEqual([{ tool: 'lookup', arguments: { key: 'cpu' }, credential: HTTP_TOKEN }]);
  });

  it('never sends an ungranted, unknown or other-domain tool to a server', async () => {
    const seenHttp = http.calls.length;
    const seenStdio = readStdioCalls(stdioLog).length;
    model.respondNext(
      {
        toolCalls: [
          { name: 'infra__lookup', arguments: { key: 'x' } },
          { name: 'ops__big', arguments: { bytes: 1 } },
          { name: 'ops__lookup', arguments: '{not json' },
        ],
      },
      { content: 'Could not look.' },
    );
    const runId = await send('tools', 7003, 'try everything');
    expect((await untilState(runId, ['COMPLETED', 'FAILED'])).state).toBe('COMPLETED');
    expect(http.calls.length).toBe(seenHttp);
    expect(readStdioCalls(stdioLog).length).toBe(seenStdio);
    const rows = await toolCallRows(runId);
    expect(rows.map((r) => [r.status, r.code])).toEqual([
      ['refused', 'TOOL_UNKNOWN'],
      ['refused', 'TOOL_UNKNOWN'],
      ['refused', 'INVALID_ARGUMENTS'],
    ]);
    const audit = await owner.query<{ detail: { status: string } }>(
      `SELECT detail FROM audit_events WHERE run_id = $1 AND action = 'tool.call' ORDER BY seq`,
      [runId],
    );
    expect(audit.rows.map((r) => r.detail.status)).toEqual(['refused', 'refused', 'refused']);
  });

  it('redacts a credential a tool returns before the model sees it', async () => {
    const before = model.requests.length;
    model.respondNext({ toolCalls: [{ name: 'ops__leak', arguments: {} }] }, { content: 'Done.' });
    const runId = await send('tools', 7004, 'leak please');
    expect((await untilState(runId, ['COMPLETED'])).state).toBe('COMPLETED');
    const toolMessage = lastMessage(model.requests[before + 1]!);
    expect(toolMessage.content).toContain('[REDACTED]');
    expect(toolMessage.content).not.toContain(STDIO_TOKEN);
  });

  it('does not call a write tool in shadow mode, nor offer it', async () => {
    const before = model.requests.length;
    const restarts = stdioCalls('restart').length;
    model.respondNext(
      { toolCalls: [{ name: 'ops__restart', arguments: { service: 'web' } }] },
      { content: 'Restarted.' },
    );
    const runId = await send('quiet', 7005, 'restart web');
    expect((await untilState(runId, ['COMPLETED'])).state).toBe('COMPLETED');
    expect(toolNamesOffered(model.requests[before]!).sort()).toEqual(
      ['ops__injection', 'ops__leak', 'ops__lookup', 'web__lookup'].sort(),
    );
    expect(stdioCalls('restart').length).toBe(restarts);
    expect((await toolCallRows(runId)).map((r) => r.status)).toEqual(['refused']);
    expect(sentTo(7005)).toHaveLength(0); // shadow: recorded, never sent
  });

  it('keeps write tools off while the runtime feature flag is off', async () => {
    const restarts = stdioCalls('restart').length;
    model.respondNext(
      { toolCalls: [{ name: 'ops__restart', arguments: { service: 'web' } }] },
      { content: 'ok' },
    );
    const runId = await send('nowrites', 7006, 'restart web');
    expect((await untilState(runId, ['COMPLETED'])).state).toBe('COMPLETED');
    expect(stdioCalls('restart').length).toBe(restarts);
    expect((await toolCallRows(runId)).map((r) => r.status)).toEqual(['refused']);
  });

  it('turns a write call into a proposal in suggest mode', async () => {
    const restarts = stdioCalls('restart').length;
    model.respondNext(
      { toolCalls: [{ name: 'ops__restart', arguments: { service: 'api' } }] },
      { content: 'I suggest a restart.' },
    );
    const runId = await send('advice', 7007, 'fix the api');
    const row = await untilState(runId, ['COMPLETED']);
    expect(stdioCalls('restart').length).toBe(restarts);
    expect(row.output!.text).toContain('Proposed actions (not carried out):');
    expect(row.output!.text).toContain('ops.restart {"service":"api"}');
    expect((await toolCallRows(runId)).map((r) => r.status)).toEqual(['proposed']);
  });
});

describe('two workers on one run', () => {
  it('a worker with a stale view of the checkpoints never makes a finished write again', async () => {
    model.respondNext(
      { toolCalls: [{ name: 'ops__restart', arguments: { service: 'cache' } }] },
      { content: 'Cache restarted.' },
    );
    const runId = await send('tools', 7008, 'restart the cache');
    expect((await untilState(runId, ['COMPLETED'])).state).toBe('COMPLETED');
    const restarts = stdioCalls('restart').length;

    // What a second worker that read the checkpoints before the call was settled holds.
    const { run, contracts, steps } = await withProject(db().pool, 'tools', async (tx) => {
      const found = (await getRun(tx, runId))!;
      return {
        run: found,
        contracts: await loadPinnedContracts(pipeline.ctx, tx, found),
        steps: await listRunSteps(tx, runId),
      };
    });
    expect(steps.map((step) => step.kind)).toEqual(['model', 'tool', 'model']);
    const stale = runToolLoop(pipeline.ctx, {
      run,
      contracts,
      messages: [
        { role: 'system', content: 'prompt' },
        { role: 'user', content: 'restart the cache' },
      ],
      steps: [steps[0]!],
    });
    await expect(stale).rejects.toMatchObject({ code: 'STEP_RACE' });
    expect(stdioCalls('restart').length).toBe(restarts);
  });
});

describe('approvals', () => {
  async function pausedRun(chatId: number, text: string) {
    const runId = await send('tools', chatId, text);
    await untilState(runId, ['WAITING_APPROVAL']);
    const { rows } = await owner.query<{ approval_id: string; call_sha256: string; tool: string }>(
      `SELECT approval_id, call_sha256, tool FROM approvals WHERE run_id = $1`,
      [runId],
    );
    expect(rows).toHaveLength(1);
    return { runId, approval: rows[0]! };
  }
  const decide = (approvalId: string, decision: 'approved' | 'rejected') =>
    decideApproval(
      {
        pool: db().pool,
        enqueue: pipeline.queues.enqueue,
        contracts: pipeline.ctx.contracts,
        channels: pipeline.ctx.channels,
      },
      { projectId: 'tools', approvalId, decision, decidedBy: `telegram:${APPROVER}`, via: 'api' },
    );

  it('pauses for a grant that requires approval and resumes without repeating earlier calls', async () => {
    const before = model.requests.length;
    const lookups = http.calls.filter((c) => c.tool === 'lookup').length;
    model.respondNext(
      { toolCalls: [{ name: 'web__lookup', arguments: { key: 'web' } }] },
      { toolCalls: [{ name: 'web__restart', arguments: { service: 'web' } }] },
      { content: 'Restarted web.' },
    );
    const { runId, approval } = await pausedRun(7101, 'restart web if needed');
    expect(approval.tool).toBe('web.restart');
    expect(http.calls.filter((c) => c.tool === 'restart')).toHaveLength(0);
    expect(model.requests.length - before).toBe(2);

    await decide(approval.approval_id, 'approved');
    const row = await untilState(runId, ['COMPLETED', 'FAILED']);
    expect(row.state).toBe('COMPLETED');
    expect(http.calls.filter((c) => c.tool === 'restart')).toEqual([
      { tool: 'restart', arguments: { service: 'web' }, credential: HTTP_TOKEN },
    ]);
    // The read call before the pause was made once, and no model step was paid twice.
    expect(http.calls.filter((c) => c.tool === 'lookup').length - lookups).toBe(1);
    expect(model.requests.length - before).toBe(3);
    expect((await toolCallRows(runId)).map((r) => [r.tool, r.status])).toEqual([
      ['lookup', 'ok'],
      ['restart', 'ok'],
    ]);
    await expect(decide(approval.approval_id, 'rejected')).rejects.toMatchObject({
      code: 'APPROVAL_ALREADY_DECIDED',
    });

    // The run's record shows what the agent did: each call by digest, and who approved what.
    const key = await pipeline.createKey('tools', ['operator']);
    const view = (await (
      await fetch(`${pipeline.url}/v1/projects/tools/runs/${runId}`, {
        headers: { authorization: `Bearer ${key}` },
      })
    ).json()) as {
      tool_calls: { tool: string; status: string; arguments_sha256: string }[];
      approvals: { status: string; decided_by: string; call_sha256: string }[];
      timeline: { to: string }[];
    };
    expect(view.tool_calls.map((c) => [c.tool, c.status])).toEqual([
      ['web.lookup', 'ok'],
      ['web.restart', 'ok'],
    ]);
    expect(view.approvals).toEqual([
      expect.objectContaining({
        status: 'approved',
        decided_by: `telegram:${APPROVER}`,
        call_sha256: view.tool_calls[1]!.arguments_sha256,
      }),
    ]);
    expect(view.timeline.map((t) => t.to)).toEqual([
      'RECEIVED',
      'RESOLVED',
      'ADMITTED',
      'WAITING_APPROVAL',
      'ADMITTED',
      'EXECUTED',
      'SANITIZED',
      'COMPLETED',
    ]);
  });

  it('needs approval for a write after untrusted tool content entered the run', async () => {
    model.respondNext(
      { toolCalls: [{ name: 'ops__injection', arguments: {} }] },
      { toolCalls: [{ name: 'ops__restart', arguments: { service: 'prod' } }] },
    );
    const restarts = stdioCalls('restart').length;
    const { runId, approval } = await pausedRun(7102, 'check the news');
    expect(approval.tool).toBe('ops.restart');
    const reasons = await owner.query<{ reasons: string[] }>(
      'SELECT reasons FROM approvals WHERE approval_id = $1',
      [approval.approval_id],
    );
    expect(reasons.rows[0]!.reasons).toEqual(['untrusted_content_in_run']);
    const injected = model.requests.at(-1)!.body.messages.find((m) => m.role === 'tool');
    expect(injected!.content).toContain(INJECTION_TEXT);

    await decide(approval.approval_id, 'rejected');
    const row = await untilState(runId, ['FAILED']);
    expect(row.failure_code).toBe('APPROVAL_REJECTED');
    expect(stdioCalls('restart').length).toBe(restarts);
    await waitFor(() => sentTo(7102).length === 1 || undefined, { what: 'the failure notice' });
  });

  it('needs approval for a write when an earlier answer of the session read a tool', async () => {
    model.respondNext(
      { toolCalls: [{ name: 'ops__lookup', arguments: { key: 'status' } }] },
      { content: 'Status read.' },
    );
    const first = await send('tools', 7105, 'read the status');
    expect((await untilState(first, ['COMPLETED'])).state).toBe('COMPLETED');
    model.respondNext({ toolCalls: [{ name: 'ops__restart', arguments: { service: 'status' } }] });
    const restarts = stdioCalls('restart').length;
    const { runId, approval } = await pausedRun(7105, 'now restart it');
    const reasons = await owner.query<{ reasons: string[] }>(
      'SELECT reasons FROM approvals WHERE approval_id = $1',
      [approval.approval_id],
    );
    expect(reasons.rows[0]!.reasons).toEqual(['untrusted_content_in_run']);
    expect(stdioCalls('restart').length).toBe(restarts);
    await decide(approval.approval_id, 'rejected');
    expect((await untilState(runId, ['FAILED'])).failure_code).toBe('APPROVAL_REJECTED');
  });

  it('asks the approver on Telegram with buttons, and a press resumes the run', async () => {
    model.respondNext(
      { toolCalls: [{ name: 'web__restart', arguments: { service: 'queue' } }] },
      { content: 'Queue restarted.' },
      { content: 'And the follow-up, after it.' },
    );
    const { runId, approval } = await pausedRun(7104, 'restart the queue');
    // A follow-up in the same chat waits behind the paused run, as long as it does.
    const followUp = await send('tools', 7104, 'and then?');
    const deadlines = await waitFor(
      async () => {
        const { rows } = await owner.query<{ run_id: string; deadline_at: Date }>(
          'SELECT run_id, deadline_at FROM runs WHERE run_id = ANY($1)',
          [[runId, followUp]],
        );
        const of = (id: string) => rows.find((r) => r.run_id === id)!.deadline_at.getTime();
        return of(followUp) >= of(runId) ? rows : undefined;
      },
      { what: 'the follow-up to take the paused run’s deadline' },
    );
    expect(deadlines).toHaveLength(2);
    expect((await runRow(followUp)).state).toBe('ADMITTED');
    const prompt = await waitFor(
      () => sentTo(APPROVER).find((m) => String(m.text).includes(approval.approval_id)),
      { what: 'the approval prompt' },
    );
    expect(prompt.text).toContain('web.restart');
    expect(prompt.text).toMatch(/"service": ?"queue"/);
    const buttons = (
      prompt.reply_markup as { inline_keyboard: { text: string; callback_data: string }[][] }
    ).inline_keyboard.flat();
    const approve = buttons.find((b) => b.text === 'Approve')!;
    expect(approve.callback_data).toBe(`ap:${approval.approval_id}:y`);

    const press = (fromId: number) =>
      fetch(`${pipeline.url}/webhooks/telegram/tools/${APPROVALS_ACCOUNT}`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'x-telegram-bot-api-secret-token': TEST_SECRETS['tg-webhook'],
        },
        body: JSON.stringify(
          telegramCallbackQuery({ updateId: nextUpdateId++, fromId, data: approve.callback_data }),
        ),
      });
    // Someone who is not an approver changes nothing.
    expect((await press(123_456)).status).toBe(200);
    expect((await runRow(runId)).state).toBe('WAITING_APPROVAL');
    expect((await press(APPROVER)).status).toBe(200);
    const row = await untilState(runId, ['COMPLETED', 'FAILED']);
    expect(row.state).toBe('COMPLETED');
    expect(
      http.calls.filter((c) => c.tool === 'restart' && c.arguments.service === 'queue'),
    ).toHaveLength(1);
    const decided = await owner.query<{ status: string; decided_by: string; decided_via: string }>(
      'SELECT status, decided_by, decided_via FROM approvals WHERE approval_id = $1',
      [approval.approval_id],
    );
    expect(decided.rows[0]).toEqual({
      status: 'approved',
      decided_by: `telegram:${APPROVER}`,
      decided_via: 'telegram',
    });
    // The follow-up is answered after the resumed run, in order.
    expect((await untilState(followUp, ['COMPLETED', 'FAILED'])).state).toBe('COMPLETED');
    await waitFor(() => sentTo(7104).length === 2 || undefined, { what: 'both replies' });
    expect(sentTo(7104).map((m) => m.text)).toEqual([
      'Queue restarted.',
      'And the follow-up, after it.',
    ]);
    // The same press again (Telegram retries) decides nothing more.
    expect((await press(APPROVER)).status).toBe(200);
    expect(
      http.calls.filter((c) => c.tool === 'restart' && c.arguments.service === 'queue'),
    ).toHaveLength(1);
  });

  it('ends the run with APPROVAL_EXPIRED when nobody decides in time', async () => {
    model.respondNext({ toolCalls: [{ name: 'ops__delete_all', arguments: {} }] });
    const { runId, approval } = await pausedRun(7103, 'delete everything');
    expect(approval.tool).toBe('ops.delete_all');
    await owner.query(
      `UPDATE approvals SET expires_at = now() - interval '1 second' WHERE approval_id = $1`,
      [approval.approval_id],
    );
    await expect(decide(approval.approval_id, 'approved')).rejects.toMatchObject({
      code: 'APPROVAL_EXPIRED',
    });
    const report = await pipeline.sweep(60_000);
    expect(report.expired).toBe(1);
    const row = await untilState(runId, ['FAILED']);
    expect(row.failure_code).toBe('APPROVAL_EXPIRED');
    expect(stdioCalls('delete_all')).toHaveLength(0);
    await waitFor(() => sentTo(7103).length === 1 || undefined, { what: 'the failure notice' });
  });
});

describe('a worker killed between a tool call and the next model step', () => {
  it('resumes from the checkpoint without calling the tool again', async () => {
    await pipeline.stopWorkers();
    pipeline.startWorkers(['resolve', 'policy', 'sanitize', 'deliver']);
    const seen = http.calls.length;
    const before = model.requests.length;
    // The second model step hangs: the tool's result is checkpointed and the worker is
    // waiting on the model when it dies.
    model.respondNext(
      { toolCalls: [{ name: 'web__lookup', arguments: { key: 'crash' } }] },
      { content: 'never read', delayMs: 60_000 },
      { content: 'After the crash.' },
    );
    const first = spawnExecuteWorker();
    const runId = await send('tools', 7201, 'survive a crash');
    await waitFor(() => model.requests.length - before >= 2 || undefined, {
      what: 'the second model step',
      timeoutMs: 90_000,
    });
    await killWorker(first);
    spawnExecuteWorker();
    const row = await untilState(runId, ['COMPLETED', 'FAILED']);
    expect(row.state).toBe('COMPLETED');
    expect(row.output!.text).toBe('After the crash.');
    expect(http.calls.slice(seen)).toEqual([
      { tool: 'lookup', arguments: { key: 'crash' }, credential: HTTP_TOKEN },
    ]);
    expect(model.requests.length - before).toBe(3);
    expect((await toolCallRows(runId)).map((r) => r.status)).toEqual(['ok']);
  }, 240_000);
});

describe('a worker killed while a write call is in flight', () => {
  it('settles the call uncertain on resume and never makes it again', async () => {
    // Execute runs only in child processes since the test above; this one starts its own.
    for (const child of children) await killWorker(child);
    const before = model.requests.length;
    const calls = stdioCalls('slow').length;
    model.respondNext(
      { toolCalls: [{ name: 'ops__slow', arguments: { ms: 60_000 } }] },
      { content: 'Told you the outcome is unknown.' },
    );
    // The fake server logs a call before it answers: once it is logged, the call was made.
    const first = spawnExecuteWorker();
    const runId = await send('tools', 7202, 'do the slow write');
    await waitFor(() => stdioCalls('slow').length > calls || undefined, {
      what: 'the write call to reach the server',
      timeoutMs: 90_000,
    });
    await killWorker(first);
    spawnExecuteWorker();
    const row = await untilState(runId, ['COMPLETED', 'FAILED']);
    expect(row.state).toBe('COMPLETED');
    expect(stdioCalls('slow').length - calls).toBe(1);
    expect((await toolCallRows(runId)).map((r) => [r.status, r.code])).toEqual([
      ['uncertain', 'TOOL_OUTCOME_UNKNOWN'],
    ]);
    const toolMessage = lastMessage(model.requests.at(-1)!);
    expect(toolMessage.content).toContain('outcome unknown');
    expect(model.requests.length - before).toBe(2);
  }, 240_000);
});

describe('credentials', () => {
  it('appear nowhere outside the secrets table: not in any table, log line, Redis key or model request', async () => {
    const values = [STDIO_TOKEN, HTTP_TOKEN];
    const tables = await owner.query<{ table_name: string }>(
      `SELECT table_name FROM information_schema.tables
        WHERE table_schema = 'public' AND table_type = 'BASE TABLE' AND table_name <> 'secrets'`,
    );
    expect(tables.rows.length).toBeGreaterThan(10);
    for (const { table_name } of tables.rows) {
      const dump = await owner.query<{ row: string }>(
        `SELECT t::text AS row FROM "${table_name}" t`,
      );
      for (const { row } of dump.rows) {
        for (const value of values) expect(row, `${table_name}`).not.toContain(value);
      }
    }
    // The stdio server printed its token on stderr; the gateway logged the line without it.
    expect(logLines.some((l) => l.includes('starting with token [REDACTED]'))).toBe(true);
    for (const line of logLines) for (const value of values) expect(line).not.toContain(value);
    for (const request of model.requests)
      for (const value of values) expect(request.rawBody).not.toContain(value);

    const redis = pipeline.ctx.redis;
    let cursor = '0';
    let keys = 0;
    do {
      const [next, batch] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500);
      cursor = next;
      for (const key of batch) {
        keys += 1;
        const type = await redis.type(key);
        const dump =
          type === 'string'
            ? await redis.get(key)
            : type === 'hash'
              ? JSON.stringify(await redis.hgetall(key))
              : type === 'list'
                ? JSON.stringify(await redis.lrange(key, 0, -1))
                : type === 'zset'
                  ? JSON.stringify(await redis.zrange(key, 0, -1))
                  : type === 'set'
                    ? JSON.stringify(await redis.smembers(key))
                    : type === 'stream'
                      ? JSON.stringify(await redis.xrange(key, '-', '+'))
                      : '';
        for (const value of values) expect(dump ?? '', key).not.toContain(value);
      }
    } while (cursor !== '0');
    expect(keys).toBeGreaterThan(0);
  });
});
