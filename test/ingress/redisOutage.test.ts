import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { telegramUpdate } from '../../ops/fakes/channelPayloads.ts';
import { startLineServer } from '../fakes/lineServer.ts';
import { startModelServer } from '../fakes/modelServer.ts';
import { startTelegramServer } from '../../ops/fakes/telegramServer.ts';
import { setUpTestTenant, TEST_SECRETS } from '../../ops/fakes/pipelineTenant.ts';
import { startPipeline, type Pipeline } from '../helpers/startPipeline.ts';
import { startTcpProxy, type TcpProxy } from '../helpers/startTcpProxy.ts';
import { useTestDatabase } from '../helpers/testDatabase.ts';
import { TEST_REDIS_URL, useRedisPrefix } from '../helpers/useRedisPrefix.ts';
import { waitFor } from '../helpers/waitFor.ts';

// Regression (issue 12, item 13): with Redis down, ingress waited the whole outage inside the
// enqueue and only then answered, so the documented fallback (answer from the durable write,
// the sweeper enqueues) never applied. Every connection of the pipeline goes through a proxy
// the test cuts; the shared Redis is never stopped.
const db = useTestDatabase();
const prefix = useRedisPrefix();
const PROJECT = 'redisdown';
/** Far longer than any answer may take while Redis is away. */
const OUTAGE_MS = 20_000;
/** An answer slower than this waited for Redis. */
const ANSWER_WITHIN_MS = 5000;

let telegram: Awaited<ReturnType<typeof startTelegramServer>>;
let line: Awaited<ReturnType<typeof startLineServer>>;
let model: Awaited<ReturnType<typeof startModelServer>>;
let proxy: TcpProxy;
let pipeline: Pipeline;
let owner: pg.Client;
let key: string;

beforeAll(async () => {
  telegram = await startTelegramServer();
  line = await startLineServer();
  model = await startModelServer();
  const redis = new URL(TEST_REDIS_URL);
  proxy = await startTcpProxy({ host: redis.hostname, port: Number(redis.port || 6379) });
  const viaProxy = new URL(TEST_REDIS_URL);
  viaProxy.port = String(proxy.port);
  pipeline = await startPipeline({
    pool: db().pool,
    sweeperPool: db().sweeperPool,
    prefix,
    redisUrl: viaProxy.toString(),
    failFastIngress: true,
    // Limits fail open: with Redis away the answer still comes from the durable write.
    admission: { maxBacklog: 1000, projectMaxBacklog: 100, backlogRetryAfterS: 5 },
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

afterAll(async () => {
  await proxy?.restore();
  await pipeline?.close();
  await proxy?.close();
  await Promise.all([telegram?.close(), line?.close(), model?.close()]);
});

type RunRow = { run_id: string; state: string; failure_code: string | null };
async function run(runId: string): Promise<RunRow | undefined> {
  const { rows } = await owner.query<RunRow>(
    'SELECT run_id, state, failure_code FROM runs WHERE run_id = $1',
    [runId],
  );
  return rows[0];
}

describe('ingress while Redis is down', () => {
  it('answers from the durable write at once, and the sweeper enqueues the run once Redis is back', async () => {
    await proxy.cut();
    const cutAt = Date.now();
    // Both answers must come while Redis is still away: a request that waited for Redis is
    // aborted here and fails the test.
    const api = await fetch(`${pipeline.url}/v1/projects/${PROJECT}/messages`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ text: 'asked while Redis is down', conversation_id: 'c-1' }),
      signal: AbortSignal.timeout(ANSWER_WITHIN_MS),
    });
    expect(api.status).toBe(202);
    const { run_id: apiRun } = (await api.json()) as { run_id: string };
    const tg = await fetch(`${pipeline.url}/webhooks/telegram/${PROJECT}/tg`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'x-telegram-bot-api-secret-token': TEST_SECRETS['tg-webhook'],
      },
      body: JSON.stringify(telegramUpdate({ updateId: 1, chatId: 5_000_001, text: 'hi' })),
      signal: AbortSignal.timeout(ANSWER_WITHIN_MS),
    });
    expect(tg.status).toBe(200);
    const { runs: tgRuns } = (await tg.json()) as { runs: string[] };
    expect(tgRuns).toHaveLength(1);

    // Durable, not enqueued: the runs wait in Postgres, and nothing moves them yet.
    for (const runId of [apiRun, tgRuns[0]!]) {
      expect(await run(runId)).toMatchObject({ state: 'RECEIVED' });
    }
    await new Promise((r) => setTimeout(r, Math.max(0, cutAt + OUTAGE_MS - Date.now())));
    expect(await run(apiRun)).toMatchObject({ state: 'RECEIVED' });
    await proxy.restore();

    // The sweeper finds the runs with no job and enqueues them; each completes once.
    const sweeping = setInterval(() => void pipeline.sweep(0).catch(() => {}), 1000);
    try {
      for (const runId of [apiRun, tgRuns[0]!]) {
        await waitFor(
          async () => {
            const row = await run(runId);
            return row && (row.state === 'COMPLETED' || row.state === 'FAILED') && row;
          },
          { what: `run ${runId} to finish`, timeoutMs: 60_000, intervalMs: 250 },
        ).then((row) => expect(row).toMatchObject({ state: 'COMPLETED', failure_code: null }));
      }
    } finally {
      clearInterval(sweeping);
    }
    expect(telegram.sent.filter((m) => m.chat_id === '5000001')).toHaveLength(1);
    // Each run was executed once: one model call apiece, no second copy of a job.
    expect(model.requests).toHaveLength(2);
  }, 120_000);
});
