import type pg from 'pg';
import type { DatabasePool } from 'slonik';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createDbPool } from '../../db/createDbPool.ts';
import { loginUrl } from '../../db/loginUrl.ts';
import { stageJobId } from '../../pipeline/contracts/runState.ts';
import { lineWebhook, telegramUpdate } from '../../ops/fakes/channelPayloads.ts';
import { startLineServer } from '../fakes/lineServer.ts';
import { startModelServer } from '../fakes/modelServer.ts';
import { startTelegramServer } from '../../ops/fakes/telegramServer.ts';
import { setUpTestTenant, TEST_SECRETS } from '../../ops/fakes/pipelineTenant.ts';
import { startPipeline, type Pipeline } from '../helpers/startPipeline.ts';
import { startTcpProxy, type TcpProxy } from '../helpers/startTcpProxy.ts';
import { useTestDatabase } from '../helpers/testDatabase.ts';
import { useRedisPrefix } from '../helpers/useRedisPrefix.ts';
import { waitFor } from '../helpers/waitFor.ts';

// Regression (issue 12, item 12), the short cases: while the pipeline cannot reach Postgres
// (a proxy the test cuts) ingress refuses with 503 and writes nothing, and a stage job that
// outwaits its bound hands the run to the sweeper instead of failing it.
const db = useTestDatabase();
const prefix = useRedisPrefix();
const PROJECT = 'dbaway';
/** A short bound, so a job gives up within the test. */
const DATABASE_WAIT_MS = 3000;

let telegram: Awaited<ReturnType<typeof startTelegramServer>>;
let line: Awaited<ReturnType<typeof startLineServer>>;
let model: Awaited<ReturnType<typeof startModelServer>>;
let proxy: TcpProxy;
let proxied: DatabasePool;
let proxiedSweeper: DatabasePool;
let pipeline: Pipeline;
let owner: pg.Client;
let key: string;

beforeAll(async () => {
  telegram = await startTelegramServer();
  line = await startLineServer();
  model = await startModelServer({ delayMs: 1000 });
  const direct = new URL(db().url);
  proxy = await startTcpProxy({ host: direct.hostname, port: Number(direct.port || 5432) });
  const viaProxy = new URL(db().url);
  viaProxy.port = String(proxy.port);
  // as the processes connect: the runtime's login, and the sweeper's for the sweeps
  proxied = await createDbPool(loginUrl(viaProxy.toString(), 'app'), { maxPoolSize: 5 });
  proxiedSweeper = await createDbPool(loginUrl(viaProxy.toString(), 'sweeper'), {
    maxPoolSize: 2,
  });
  pipeline = await startPipeline({
    pool: proxied,
    sweeperPool: proxiedSweeper,
    prefix,
    databaseWaitMs: DATABASE_WAIT_MS,
  });
  owner = await db().owner();
  await setUpTestTenant(pipeline, db().pool, {
    projectId: PROJECT,
    telegramApiRoot: telegram.apiRoot,
    lineBaseUrl: line.baseUrl,
    modelBaseUrl: model.url,
  });
  key = await pipeline.createKey(PROJECT);
});

afterEach(() => proxy.restore());

afterAll(async () => {
  await proxy?.restore();
  await pipeline?.close();
  await proxied?.end();
  await proxiedSweeper?.end();
  await proxy?.close();
  await Promise.all([telegram?.close(), line?.close(), model?.close()]);
});

async function counts() {
  const { rows } = await owner.query<{ events: number; runs: number }>(
    `SELECT (SELECT count(*)::int FROM conversation_events) AS events,
            (SELECT count(*)::int FROM runs) AS runs`,
  );
  return rows[0]!;
}

const telegramPost = (chatId: number, updateId: number) =>
  fetch(`${pipeline.url}/webhooks/telegram/${PROJECT}/tg`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'x-telegram-bot-api-secret-token': TEST_SECRETS['tg-webhook'],
    },
    body: JSON.stringify(telegramUpdate({ updateId, chatId, text: `hello ${chatId}` })),
  });

describe('while the database is unreachable', () => {
  it('ingress answers 503 DATABASE_UNAVAILABLE with Retry-After and writes nothing', async () => {
    const before = await counts();
    await proxy.cut();
    const signed = lineWebhook({
      events: [{ text: 'hi from line' }],
      channelSecret: TEST_SECRETS['line-secret'],
    });
    const answers = [
      await fetch(`${pipeline.url}/v1/projects/${PROJECT}/messages`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ text: 'hi' }),
      }),
      await telegramPost(6_000_001, 1),
      await fetch(`${pipeline.url}/webhooks/line/${PROJECT}/ln`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-line-signature': signed.signature },
        body: signed.body,
      }),
    ];
    for (const res of answers) {
      expect(res.status).toBe(503);
      expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0);
      expect(await res.json()).toEqual({
        error: { code: 'DATABASE_UNAVAILABLE', message: expect.any(String) },
      });
    }
    expect(await counts()).toEqual(before);
  });

  it('a stage job that outwaits its bound leaves the run to the sweeper, which completes it', async () => {
    const asked = model.requests.length;
    expect((await telegramPost(6_000_002, 2)).status).toBe(200);
    const { rows } = await owner.query<{ run_id: string }>(
      'SELECT run_id FROM runs ORDER BY created_at DESC LIMIT 1',
    );
    const runId = rows[0]!.run_id;
    // The model is answering: execute writes its step next, into a database that is gone.
    await waitFor(() => model.requests.length > asked || undefined, { what: 'the model call' });
    await proxy.cut();
    const job = () => pipeline.queues.queues.execute.getJobState(stageJobId('execute', runId));
    await waitFor(async () => (await job()) === 'unknown' || undefined, {
      what: 'the execute job to give the run up',
      timeoutMs: 30_000,
      intervalMs: 200,
    });
    const { rows: held } = await owner.query<{ state: string }>(
      'SELECT state FROM runs WHERE run_id = $1',
      [runId],
    );
    expect(held).toEqual([{ state: 'ADMITTED' }]);

    await proxy.restore();
    const sweeping = setInterval(() => void pipeline.sweep(0).catch(() => {}), 500);
    try {
      const done = await waitFor(
        async () => {
          const { rows: now } = await owner.query<{ state: string; failure_code: string | null }>(
            'SELECT state, failure_code FROM runs WHERE run_id = $1',
            [runId],
          );
          const run = now[0];
          return run && (run.state === 'COMPLETED' || run.state === 'FAILED') && run;
        },
        { what: 'the run to finish', timeoutMs: 30_000, intervalMs: 200 },
      );
      expect(done).toEqual({ state: 'COMPLETED', failure_code: null });
    } finally {
      clearInterval(sweeping);
    }
    expect(telegram.sent.filter((m) => m.chat_id === '6000002')).toHaveLength(1);
  });
});
