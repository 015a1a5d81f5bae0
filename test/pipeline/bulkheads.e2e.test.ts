import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Redis } from 'ioredis';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBulkheads } from '../../pipeline/bulkheads/createBulkheads.ts';
import { TenantFile } from '../../pipeline/contracts/tenantFile.ts';
import { applyTestTenant, pipelineTenant } from '../../ops/fakes/pipelineTenant.ts';
import { startPipeline, type Pipeline } from '../helpers/startPipeline.ts';
import { useTestDatabase } from '../helpers/testDatabase.ts';
import { TEST_REDIS_URL, useRedisPrefix } from '../helpers/useRedisPrefix.ts';
import { waitFor } from '../helpers/waitFor.ts';

const db = useTestDatabase();
const prefix = useRedisPrefix();

const SLOW = 'slowco';
const QUICK = 'quickco';
/** Far past anything the test waits for: the hung server holds its callers until released. */
const TOOL_TIMEOUT_MS = 300_000;

let pipeline: Pipeline;
let owner: pg.Client;
let hung: { url: string; server: Server; held: ServerResponse[] };
const redises: Redis[] = [];

/** An MCP endpoint that takes every request and answers none: a server hung at connect. */
async function startHungServer() {
  const held: ServerResponse[] = [];
  const server = createServer((_req, res) => void held.push(res));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}/mcp`, server, held };
}

/** A tenant whose agent lists the tools of `url` before its first model step. */
function slowTenant(url: string) {
  const base = pipelineTenant({
    projectId: SLOW,
    telegramApiRoot: 'http://127.0.0.1:9',
    lineBaseUrl: 'http://127.0.0.1:9',
  });
  return {
    ...base,
    tenant: TenantFile.parse({
      ...base.tenant,
      agents: { helper: { ...base.tenant.agents.helper, tools: ['stuck.lookup'] } },
      mcpGateway: {
        servers: [
          {
            name: 'stuck',
            contextDomain: 'general',
            environment: 'prod',
            transport: { type: 'streamable_http', url, sseFallback: false },
            tools: [{ name: 'lookup', risk: 'read', timeoutMs: TOOL_TIMEOUT_MS }],
          },
        ],
        grants: [{ agent: 'helper', tools: ['stuck.lookup'], environments: ['prod'] }],
      },
      runtime: {
        ...base.tenant.runtime,
        timeouts: { ...base.tenant.runtime.timeouts, runMs: 600_000, toolMs: TOOL_TIMEOUT_MS },
      },
    }),
  };
}

beforeAll(async () => {
  hung = await startHungServer();
  // Three workers per stage; a project may hold two of them, an MCP server one.
  pipeline = await startPipeline({
    pool: db().pool,
    sweeperPool: db().sweeperPool,
    prefix,
    concurrency: 3,
    bulkheads: { projectSlots: 2, dependencySlots: 1 },
  });
  owner = await db().owner();
  const ctx = { pool: db().pool, logger: pipeline.ctx.logger };
  await applyTestTenant(ctx, slowTenant(hung.url));
  await applyTestTenant(
    ctx,
    pipelineTenant({
      projectId: QUICK,
      telegramApiRoot: 'http://127.0.0.1:9',
      lineBaseUrl: 'http://127.0.0.1:9',
    }),
  );
});

afterAll(async () => {
  // The hung server first: a worker still connecting to it would hold the close.
  hung?.server.closeAllConnections();
  if (hung?.server.listening) await new Promise((r) => hung.server.close(r));
  await pipeline?.close();
  await owner?.end();
  for (const r of redises) r.disconnect();
});

async function post(projectId: string, key: string, i: number): Promise<string> {
  const res = await fetch(`${pipeline.url}/v1/projects/${projectId}/messages`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ text: `message ${i}`, conversation_id: `c-${i}` }),
  });
  expect(res.status).toBe(202);
  return ((await res.json()) as { run_id: string }).run_id;
}

async function states(projectId: string): Promise<string[]> {
  const { rows } = await owner.query<{ state: string }>(
    'SELECT state FROM runs WHERE project_id = $1 ORDER BY run_seq',
    [projectId],
  );
  return rows.map((r) => r.state);
}

describe('a project whose MCP server hangs at connect', () => {
  it("holds only its own share: another project's runs complete while its runs wait, and its runs complete once the server is gone", async () => {
    const slowKey = await pipeline.createKey(SLOW);
    const quickKey = await pipeline.createKey(QUICK);
    const slowRuns: string[] = [];
    for (let i = 0; i < 6; i++) slowRuns.push(await post(SLOW, slowKey, i));
    // The first of them is connecting to the hung server before the other project posts.
    await waitFor(() => hung.held.length > 0, { what: 'a connect to the hung server' });
    for (let i = 0; i < 4; i++) await post(QUICK, quickKey, i);

    // Before this bulkhead, the slow project's runs took every execute worker for as long as
    // the connect hung, and these waited behind them.
    await waitFor(
      async () => {
        const s = await states(QUICK);
        return s.length === 4 && s.every((x) => x === 'COMPLETED');
      },
      { what: "the quick project's runs completed", timeoutMs: 45_000 },
    );
    const waiting = await states(SLOW);
    expect(waiting).toHaveLength(6);
    expect(waiting.filter((s) => s === 'COMPLETED' || s === 'FAILED')).toEqual([]);

    // Waiting runs are delayed jobs, alive: the sweeper enqueues no second job for them.
    const report = await pipeline.sweep(0);
    expect(report.requeued).toBe(0);

    // The server goes away: the connect fails, the runs go on without its tools, each once.
    hung.server.closeAllConnections();
    await new Promise((r) => hung.server.close(r));
    await waitFor(
      async () => {
        const s = await states(SLOW);
        return s.every((x) => x === 'COMPLETED') ? s : false;
      },
      { what: "the slow project's runs completed" },
    );
    const { rows } = await owner.query<{ run_id: string; n: string }>(
      `SELECT r.run_id, count(t.*) AS n FROM runs r
         JOIN run_transitions t ON t.run_id = r.run_id AND t.to_state = 'COMPLETED'
        WHERE r.project_id = $1 GROUP BY r.run_id`,
      [SLOW],
    );
    expect(rows.map((r) => [r.run_id, Number(r.n)]).sort()).toEqual(
      [...slowRuns].sort().map((id) => [id, 1]),
    );
    const replies = await owner.query<{ run_id: string; n: string }>(
      `SELECT run_id, count(*) AS n FROM outbound_messages
        WHERE project_id = $1 AND kind = 'reply' AND status = 'sent' GROUP BY run_id`,
      [SLOW],
    );
    expect(replies.rows.map((r) => Number(r.n))).toEqual(slowRuns.map(() => 1));
  }, 240_000);
});

describe('a share in Redis', () => {
  function bulkheadsOn(redis: Redis, leaseMs: number) {
    redises.push(redis);
    return createBulkheads(redis, prefix, { projectSlots: 1, dependencySlots: 1, leaseMs });
  }

  it('gives out at most its limit of places and takes a released one back', async () => {
    const b = bulkheadsOn(new Redis(TEST_REDIS_URL), 30_000);
    const first = await b.tryAcquire('t:limit', 2);
    const second = await b.tryAcquire('t:limit', 2);
    expect(first).not.toBeNull();
    expect(second).not.toBeNull();
    expect(await b.tryAcquire('t:limit', 2)).toBeNull();
    await expect(b.enter('t:limit', 2)).rejects.toMatchObject({
      code: 'BULKHEAD_FULL',
      spendsAttempt: false,
    });
    await first!.release();
    await first!.release();
    const third = await b.tryAcquire('t:limit', 2);
    expect(third).not.toBeNull();
    expect(await b.tryAcquire('t:limit', 2)).toBeNull();
    await second!.release();
    await third!.release();
  });

  it('frees the place of a worker that died holding it once its lease runs out', async () => {
    const dying = new Redis(TEST_REDIS_URL);
    const holder = bulkheadsOn(dying, 1500);
    const other = bulkheadsOn(new Redis(TEST_REDIS_URL), 1500);
    const held = await holder.tryAcquire('t:dead', 1);
    expect(held).not.toBeNull();
    // Renewed while its holder lives: still taken after two lease lengths.
    await new Promise((r) => setTimeout(r, 3000));
    expect(await other.tryAcquire('t:dead', 1)).toBeNull();
    // The holder's process dies: no renewal, no release.
    dying.disconnect();
    const taken = await waitFor(async () => (await other.tryAcquire('t:dead', 1)) ?? false, {
      what: "the dead holder's place",
      intervalMs: 200,
    });
    await taken.release();
  });
});
