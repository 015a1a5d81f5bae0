import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setUpTestTenant } from '../../ops/fakes/pipelineTenant.ts';
import { startTelegramServer } from '../../ops/fakes/telegramServer.ts';
import { runCli } from '../helpers/runCli.ts';
import { startPipeline, type Pipeline } from '../helpers/startPipeline.ts';
import { useTestDatabase } from '../helpers/testDatabase.ts';
import { TEST_REDIS_URL, useRedisPrefix } from '../helpers/useRedisPrefix.ts';
import { waitFor } from '../helpers/waitFor.ts';

const db = useTestDatabase();
const prefix = useRedisPrefix();
const PROJECT = 'metered';

let telegram: Awaited<ReturnType<typeof startTelegramServer>>;
let pipeline: Pipeline;
let clientKey: string;
let operatorKey: string;
const runIds: string[] = [];
const today = new Date().toISOString().slice(0, 10);
const yesterday = new Date(Date.now() - 86_400_000).toISOString().slice(0, 10);

const awooop = (...args: string[]) =>
  runCli(args, { DATABASE_URL: db().url, REDIS_URL: TEST_REDIS_URL, AWOOOP_REDIS_PREFIX: prefix });

const usage = (query: string, key = operatorKey) =>
  fetch(`${pipeline.url}/v1/projects/${PROJECT}/usage${query}`, {
    headers: { authorization: `Bearer ${key}` },
  });

beforeAll(async () => {
  telegram = await startTelegramServer();
  pipeline = await startPipeline({ pool: db().pool, prefix });
  // The echo model: free, but its tokens count.
  await setUpTestTenant(pipeline, db().pool, {
    projectId: PROJECT,
    telegramApiRoot: telegram.apiRoot,
    lineBaseUrl: telegram.apiRoot,
  });
  clientKey = await pipeline.createKey(PROJECT, ['client']);
  operatorKey = await pipeline.createKey(PROJECT, ['operator']);
  for (const text of ['first question', 'second question']) {
    const res = await fetch(`${pipeline.url}/v1/projects/${PROJECT}/messages`, {
      method: 'POST',
      headers: { authorization: `Bearer ${clientKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ text }),
    });
    expect(res.status).toBe(202);
    const { run_id } = (await res.json()) as { run_id: string };
    runIds.push(run_id);
    await waitFor(
      async () => {
        const run = await fetch(`${pipeline.url}/v1/projects/${PROJECT}/runs/${run_id}`, {
          headers: { authorization: `Bearer ${clientKey}` },
        });
        const body = (await run.json()) as { state: string };
        return body.state === 'COMPLETED' ? true : undefined;
      },
      { what: `run of "${text}"`, timeoutMs: 60_000 },
    );
  }
  const owner = await db().owner();
  // The second run spent yesterday (moved back by hand), and made a tool call.
  await owner.query(`UPDATE budget_reservations SET day = $2 WHERE run_id = $1`, [
    runIds[1],
    yesterday,
  ]);
  await owner.query(
    `INSERT INTO budget_reservations (project_id, run_id, step_key, kind, agent, subject, day, status)
     VALUES ($1, $2, 'tool:0:0', 'tool', 'helper', 'ops.lookup', $3, 'settled')`,
    [PROJECT, runIds[1], yesterday],
  );
});

afterAll(async () => {
  await pipeline?.close();
  await telegram?.close();
});

type Report = {
  from: string;
  to: string;
  by: string;
  total: {
    inputTokens: number;
    outputTokens: number;
    usd: number;
    toolCalls: number;
    runs: number;
  };
  rows: { key: string; runs: number; toolCalls: number }[];
};

describe('GET /v1/projects/:project/usage', () => {
  it("reports today's spend by default, and a range of days by day", async () => {
    const res = await usage('');
    expect(res.status).toBe(200);
    const report = (await res.json()) as Report;
    expect(report).toMatchObject({ from: today, to: today, by: 'total', rows: [] });
    expect(report.total.runs).toBe(1);
    expect(report.total.toolCalls).toBe(0);
    expect(report.total.usd).toBe(0);
    expect(report.total.inputTokens).toBeGreaterThan(0);
    expect(report.total.outputTokens).toBeGreaterThan(0);

    const byDay = (await (await usage(`?by=day&from=${yesterday}&to=${today}`)).json()) as Report;
    expect(byDay.rows.map((r) => [r.key, r.runs, r.toolCalls])).toEqual([
      [yesterday, 1, 1],
      [today, 1, 0],
    ]);
    expect(byDay.total.runs).toBe(2);
    expect(byDay.total.toolCalls).toBe(1);

    const byModel = (await (
      await usage(`?by=model&from=${yesterday}&to=${today}`)
    ).json()) as Report;
    expect(byModel.rows.map((r) => r.key)).toEqual(['(tools)', 'echo/echo']);
    const byAgent = (await (await usage('?by=agent&period=month')).json()) as Report;
    expect(byAgent.rows.map((r) => r.key)).toEqual(['helper']);
  });

  it('answers 400 naming the parameter for a bad query, and 403 to a client key', async () => {
    for (const [query, field] of [
      ['?by=user', 'by'],
      ['?period=week', 'period'],
      ['?from=2026-02-30&to=2026-03-01', 'from'],
      [`?from=${today}`, 'to'],
      [`?period=today&from=${today}&to=${today}`, 'period'],
      ['?group=agent', 'group'],
    ] as const) {
      const res = await usage(query);
      expect(res.status, query).toBe(400);
      const body = (await res.json()) as { error: { code: string; message: string } };
      expect(body.error.code).toBe('QUERY_INVALID');
      expect(body.error.message, query).toContain(field);
    }
    expect((await usage('', clientKey)).status).toBe(403);
  });
});

describe('awooop usage', () => {
  it('prints the report as text and as JSON', async () => {
    const text = await awooop(
      'usage',
      '--project',
      PROJECT,
      '--by',
      'model',
      '--from',
      yesterday,
      '--to',
      today,
    );
    expect(text.stderr).toBe('');
    expect(text.code).toBe(0);
    expect(text.stdout).toContain(`${PROJECT}  ${yesterday} .. ${today}`);
    expect(text.stdout).toMatch(/^echo\/echo .* runs +2$/m);
    expect(text.stdout).toMatch(/^total .* tools +1 +runs +2$/m);
    const json = await awooop('usage', '--project', PROJECT, '--json');
    expect(json.code).toBe(0);
    expect((JSON.parse(json.stdout) as Report).total.runs).toBe(1);
  });

  it('refuses a bad flag by name and an unknown project', async () => {
    const bad = await awooop('usage', '--project', PROJECT, '--by', 'user');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--by:');
    const range = await awooop('usage', '--project', PROJECT, '--from', today);
    expect(range.code).toBe(2);
    expect(range.stderr).toContain('--to: is needed with from');
    const unknown = await awooop('usage', '--project', 'nobody-here');
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('--project: no project "nobody-here"');
  });
});
