import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Worker } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readMigrations } from '../../db/migrate.ts';
import { closeServer } from '../../ingress/closeServer.ts';
import { createAccountLookup } from '../../ingress/createAccountLookup.ts';
import { createApp, type App } from '../../ingress/createApp.ts';
import { renderMetrics } from '../../ops/metrics/renderMetrics.ts';
import { STAGE_HANDLERS } from '../../ops/runWorker.ts';
import { Stage } from '../../pipeline/contracts/runJob.ts';
import { createStageWorker } from '../../workers/createStageWorker.ts';
import { recordStageMetrics } from '../../workers/recordStageMetrics.ts';
import { telegramUpdate } from '../../ops/fakes/channelPayloads.ts';
import { startLineServer } from '../fakes/lineServer.ts';
import { startModelServer } from '../fakes/modelServer.ts';
import { startTelegramServer } from '../../ops/fakes/telegramServer.ts';
import { setUpTestTenant, TEST_SECRETS } from '../../ops/fakes/pipelineTenant.ts';
import { startPipeline, type Pipeline } from '../helpers/startPipeline.ts';
import { useTestDatabase } from '../helpers/testDatabase.ts';
import { useRedisPrefix } from '../helpers/useRedisPrefix.ts';
import { waitFor } from '../helpers/waitFor.ts';

const db = useTestDatabase();
const prefix = useRedisPrefix();

let telegram: Awaited<ReturnType<typeof startTelegramServer>>;
let line: Awaited<ReturnType<typeof startLineServer>>;
let model: Awaited<ReturnType<typeof startModelServer>>;
let pipeline: Pipeline;
let workers: Worker[] = [];
let web: { app: App; server: Server; url: string };

const PROJECT = 'acme';
const METRICS_TOKEN = 'metrics-token-for-the-scraper-0001';
const ADMIN_TOKEN = 'admin-token-for-the-operator-00001';
let appDeps: Parameters<typeof createApp>[0];

beforeAll(async () => {
  telegram = await startTelegramServer();
  line = await startLineServer();
  model = await startModelServer();
  // The harness's workers keep no metrics: these are started as `awooop worker` starts them.
  pipeline = await startPipeline({ pool: db().pool, prefix, workers: false });
  const observe = recordStageMetrics(pipeline.ctx.redis, prefix);
  workers = Stage.options.map((stage) =>
    createStageWorker({
      stage,
      handler: STAGE_HANDLERS[stage],
      ctx: { ...pipeline.ctx, actor: `worker:${stage}` },
      enqueue: pipeline.queues.enqueue,
      connection: pipeline.ctx.redis,
      prefix,
      concurrency: 4,
      lockMs: 2000,
      observe,
    }),
  );
  await setUpTestTenant(pipeline, db().pool, {
    projectId: PROJECT,
    telegramApiRoot: telegram.apiRoot,
    lineBaseUrl: line.baseUrl,
    modelBaseUrl: model.url,
  });

  // `/metrics` as the web process serves it
  appDeps = {
    pool: db().pool,
    redis: pipeline.ctx.redis,
    redisPrefix: prefix,
    logger: pipeline.ctx.logger,
    codeMigration: (await readMigrations()).at(-1)?.version ?? 0,
    enqueue: pipeline.queues.enqueue,
    accounts: createAccountLookup({ pool: db().pool, contracts: pipeline.ctx.contracts }),
    secrets: pipeline.ctx.secrets,
    channels: pipeline.ctx.channels,
    contracts: pipeline.ctx.contracts,
    queues: pipeline.queues.queues,
    metrics: () =>
      renderMetrics({
        pool: db().sweeperPool,
        redis: pipeline.ctx.redis,
        prefix,
        queues: pipeline.queues.queues,
      }),
  };
  const app = createApp({ ...appDeps, metricsToken: METRICS_TOKEN, adminToken: ADMIN_TOKEN });
  const server = app.listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  web = { app, server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
});

afterAll(async () => {
  if (web) await closeServer(web.server, web.app, { graceMs: 100 });
  await Promise.all(workers.map((w) => w.close()));
  await pipeline?.close();
  await Promise.all([telegram?.close(), line?.close(), model?.close()]);
});

function postTelegram(update: object) {
  return fetch(`${pipeline.url}/webhooks/telegram/${PROJECT}/tg`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'x-telegram-bot-api-secret-token': TEST_SECRETS['tg-webhook'],
    },
    body: JSON.stringify(update),
  });
}

async function scrape(): Promise<string> {
  const res = await fetch(`${web.url}/metrics`, {
    headers: { authorization: `Bearer ${METRICS_TOKEN}` },
  });
  expect(res.status).toBe(200);
  return res.text();
}

/** The sample value of `series` (name and labels exactly as exposed), or undefined. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('/metrics', () => {
  it('after a completed and a failed run shows runs by state, latency, queues, deliveries and failures by code', async () => {
    expect(
      (await postTelegram(telegramUpdate({ updateId: 1, chatId: 7001, text: 'ok' }))).status,
    ).toBe(200);
    await waitFor(() => telegram.sent.length === 1 || undefined, { what: 'the reply' });
    // a model that refuses the key: the run fails for good at execute
    model.failNext(1, { status: 401 });
    await postTelegram(telegramUpdate({ updateId: 2, chatId: 7002, text: 'refused' }));

    const text = await waitFor(
      async () => {
        const t = await scrape();
        return sample(t, 'awooop_stage_failures_total{stage="execute",code="MODEL_REJECTED"}') ===
          1 &&
          sample(t, 'awooop_outbound_messages{project="acme",kind="reply",status="sent"}') === 1 &&
          sample(t, 'awooop_outbound_messages{project="acme",kind="failure",status="sent"}') === 1
          ? t
          : undefined;
      },
      { what: 'both runs in /metrics' },
    );

    expect(text).toContain('# TYPE awooop_runs gauge');
    expect(sample(text, 'awooop_runs{project="acme",state="COMPLETED"}')).toBe(1);
    expect(sample(text, 'awooop_runs{project="acme",state="FAILED"}')).toBe(1);
    expect(text).toContain('# TYPE awooop_runs_failed gauge');
    expect(sample(text, 'awooop_runs_failed{project="acme",code="MODEL_REJECTED"}')).toBe(1);

    // histograms in seconds, as Prometheus names them: buckets' bounds and the sum
    expect(text).toContain('# TYPE awooop_stage_duration_seconds histogram');
    const executed = sample(text, 'awooop_stage_duration_seconds_count{stage="execute"}') ?? 0;
    expect(executed).toBeGreaterThanOrEqual(2);
    expect(sample(text, 'awooop_stage_duration_seconds_bucket{stage="execute",le="+Inf"}')).toBe(
      executed,
    );
    expect(
      sample(text, 'awooop_stage_duration_seconds_bucket{stage="execute",le="0.005"}'),
    ).toBeLessThanOrEqual(executed);
    expect(
      sample(text, 'awooop_stage_duration_seconds_bucket{stage="execute",le="60"}'),
    ).toBeLessThanOrEqual(executed);
    const seconds = sample(text, 'awooop_stage_duration_seconds_sum{stage="execute"}') ?? -1;
    expect(seconds).toBeGreaterThan(0);
    expect(seconds).toBeLessThan(60 * executed);
    expect(text).not.toContain('awooop_stage_duration_ms');

    expect(text).toContain('# TYPE awooop_queue_jobs gauge');
    expect(sample(text, 'awooop_queue_jobs{stage="resolve",state="waiting"}')).toBe(0);

    // deliveries: the reply and the failure notice; a gauge, as rows change status
    expect(text).toContain('# TYPE awooop_outbound_messages gauge');

    // the gateway's calls and the approvals, read with the scrape's narrow role
    const owner = await db().owner();
    await owner.query(
      `INSERT INTO tool_calls (project_id, trace_id, agent, via, server, tool, arguments,
                               arguments_sha256, status)
       VALUES ('acme', $1, 'helper', 'mcp_endpoint', 'ops', 'lookup', '{}', $2, 'refused')`,
      ['0'.repeat(32), 'a'.repeat(64)],
    );
    // an approver's notice is a ledger row of its own kind, counted apart from the answers
    const { rows: runs } = await owner.query<{ run_id: string; trace_id: string }>(
      `SELECT run_id, trace_id FROM runs WHERE project_id = 'acme' ORDER BY run_seq LIMIT 1`,
    );
    const { rows: asked } = await owner.query<{ approval_id: string }>(
      `INSERT INTO approvals (project_id, run_id, trace_id, step_index, call_index, agent, tool,
                              risk, arguments, call_sha256, reasons, expires_at)
       VALUES ('acme', $1, $2, 0, 0, 'helper', 'ops.restart', 'write', '{}', $3, '{}',
               now() + interval '1 hour')
       RETURNING approval_id`,
      [runs[0]!.run_id, runs[0]!.trace_id, 'b'.repeat(64)],
    );
    await owner.query(
      `INSERT INTO outbound_messages (project_id, run_id, trace_id, kind, chunk_index, chunk_count,
                                      text, format, approval_id, recipient, buttons)
       VALUES ('acme', $1, $2, 'approval', 0, 1, 'Approval needed', 'plain', $3, '5551',
               '{approved,rejected}')`,
      [runs[0]!.run_id, runs[0]!.trace_id, asked[0]!.approval_id],
    );
    const after = await scrape();
    expect(sample(after, 'awooop_tool_calls{project="acme",status="refused"}')).toBe(1);
    expect(
      sample(after, 'awooop_outbound_messages{project="acme",kind="approval",status="queued"}'),
    ).toBe(1);
    expect(
      sample(after, 'awooop_outbound_messages{project="acme",kind="reply",status="sent"}'),
    ).toBe(1);
    expect(after).toContain('# TYPE awooop_approvals gauge');

    expect(text).toContain('# TYPE awooop_stage_failures_total counter');
    expect(sample(text, 'awooop_stage_jobs_total{stage="execute",outcome="failed"}')).toBe(1);
    // every family is declared once
    const declared = text.split('\n').filter((l) => l.startsWith('# TYPE '));
    expect(new Set(declared).size).toBe(declared.length);
  });
});

describe('/metrics exposition', () => {
  it('escapes label values as the text format says, not by rewriting them', async () => {
    // A field name the counters hold verbatim: a quote, a backslash and a newline in a label.
    await pipeline.ctx.redis.hincrby(`${prefix}:metrics:stage:deliver`, 'failed_A"B\\C\nD', 3);
    const text = await scrape();
    expect(sample(text, 'awooop_stage_failures_total{stage="deliver",code="A\\"B\\\\C\\nD"}')).toBe(
      3,
    );
    await pipeline.ctx.redis.hdel(`${prefix}:metrics:stage:deliver`, 'failed_A"B\\C\nD');
  });

  it('is served with the Prometheus text content type', async () => {
    const res = await fetch(`${web.url}/metrics`, {
      headers: { authorization: `Bearer ${METRICS_TOKEN}` },
    });
    expect(res.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
    await res.text();
  });
});

// Pins issue 12 item 6: /metrics was open to anyone and listed every tenant's project ids.
describe('/metrics access', () => {
  it('answers 401 in the error shape without the metrics or admin token', async () => {
    const basic = Buffer.from(`x:${METRICS_TOKEN}`).toString('base64');
    for (const authorization of [
      undefined,
      'Bearer wrong-token-wrong-token-wrong-token',
      `Bearer ${METRICS_TOKEN}x`,
      `Basic ${basic}`,
      METRICS_TOKEN,
    ]) {
      const res = await fetch(`${web.url}/metrics`, {
        headers: authorization === undefined ? {} : { authorization },
      });
      expect(res.status, String(authorization)).toBe(401);
      expect(res.headers.get('www-authenticate')).toMatch(/^Bearer/);
      const body = await res.text();
      expect(JSON.parse(body)).toEqual({
        error: { code: 'UNAUTHORIZED', message: expect.stringMatching(/metrics or admin token/) },
      });
      expect(body).not.toContain(PROJECT);
    }
  });

  it('opens with the metrics token or the admin token', async () => {
    for (const token of [METRICS_TOKEN, ADMIN_TOKEN]) {
      const res = await fetch(`${web.url}/metrics`, {
        headers: { authorization: `Bearer ${token}` },
      });
      expect(res.status).toBe(200);
      expect(await res.text()).toContain('# TYPE awooop_runs gauge');
    }
  });

  it('serves no metrics at all when no token is configured', async () => {
    const app = createApp(appDeps);
    const server = app.listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/metrics`;
      for (const headers of [{}, { authorization: 'Bearer anything-at-all-anything-at-all' }]) {
        const res = await fetch(url, { headers });
        expect(res.status).toBe(404);
        expect(await res.json()).toEqual({
          error: {
            code: 'METRICS_DISABLED',
            message: expect.stringMatching(/AWOOOP_METRICS_TOKEN/),
          },
        });
      }
    } finally {
      await closeServer(server, app, { graceMs: 100 });
    }
  });
});
