import type pg from 'pg';
import type { DatabasePool } from 'slonik';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDbPool } from '../../db/createDbPool.ts';
import { loginUrl } from '../../db/loginUrl.ts';
import { telegramUpdate } from '../../ops/fakes/channelPayloads.ts';
import { startLineServer } from '../fakes/lineServer.ts';
import { startModelServer } from '../fakes/modelServer.ts';
import { startTelegramServer } from '../../ops/fakes/telegramServer.ts';
import { setUpTestTenant, TEST_SECRETS } from '../../ops/fakes/pipelineTenant.ts';
import { startPipeline, type Pipeline } from '../helpers/startPipeline.ts';
import { startTcpProxy, type TcpProxy } from '../helpers/startTcpProxy.ts';
import { useTestDatabase } from '../helpers/testDatabase.ts';
import { useRedisPrefix } from '../helpers/useRedisPrefix.ts';
import { waitFor } from '../helpers/waitFor.ts';

// Regression (issue 12, item 12): a 14 s Postgres restart failed accepted runs with
// STAGE_FAILED, Telegram messages already answered 200 among them, and ingress answered 500
// meanwhile. The pipeline reaches Postgres through a proxy the test cuts for a minute; the
// shared server is never touched, and the test reads the truth from it directly.
const db = useTestDatabase();
const prefix = useRedisPrefix();
const PROJECT = 'outage';
const OUTAGE_MS = 60_000;
const RUNS = 12;

let telegram: Awaited<ReturnType<typeof startTelegramServer>>;
let line: Awaited<ReturnType<typeof startLineServer>>;
let model: Awaited<ReturnType<typeof startModelServer>>;
let proxy: TcpProxy;
let proxied: DatabasePool;
let proxiedSweeper: DatabasePool;
let pipeline: Pipeline;
let owner: pg.Client;
let nextUpdateId = 1;

beforeAll(async () => {
  telegram = await startTelegramServer();
  line = await startLineServer();
  // Slow enough that runs sit in execute, their model answer arriving while Postgres is away.
  model = await startModelServer({ delayMs: 1500 });
  const direct = new URL(db().url);
  proxy = await startTcpProxy({ host: direct.hostname, port: Number(direct.port || 5432) });
  const viaProxy = new URL(db().url);
  viaProxy.port = String(proxy.port);
  // as the processes connect: the runtime's login, and the sweeper's for the sweeps
  proxied = await createDbPool(loginUrl(viaProxy.toString(), 'app'), { maxPoolSize: 5 });
  proxiedSweeper = await createDbPool(loginUrl(viaProxy.toString(), 'sweeper'), {
    maxPoolSize: 2,
  });
  pipeline = await startPipeline({ pool: proxied, sweeperPool: proxiedSweeper, prefix });
  owner = await db().owner();
  await setUpTestTenant(pipeline, db().pool, {
    projectId: PROJECT,
    telegramApiRoot: telegram.apiRoot,
    lineBaseUrl: line.baseUrl,
    modelBaseUrl: model.url,
  });
});

afterAll(async () => {
  await proxy?.restore();
  await pipeline?.close();
  await proxied?.end();
  await proxiedSweeper?.end();
  await proxy?.close();
  await Promise.all([telegram?.close(), line?.close(), model?.close()]);
});

const post = (chatId: number, text: string, updateId = nextUpdateId++) =>
  fetch(`${pipeline.url}/webhooks/telegram/${PROJECT}/tg`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'x-telegram-bot-api-secret-token': TEST_SECRETS['tg-webhook'],
    },
    body: JSON.stringify(telegramUpdate({ updateId, chatId, text })),
  });

type RunRow = { run_id: string; state: string; failure_code: string | null };
async function runs(): Promise<RunRow[]> {
  const { rows } = await owner.query<RunRow>(
    'SELECT run_id, state, failure_code FROM runs ORDER BY created_at',
  );
  return rows;
}

describe('a database restart', () => {
  it('is waited out: every accepted run completes with one reply, and ingress answers 503 meanwhile', async () => {
    const chats = Array.from({ length: RUNS }, (_, i) => 4_000_000 + i);
    for (const chat of chats) {
      const res = await post(chat, `question ${chat}`);
      expect(res.status).toBe(200);
      await new Promise((r) => setTimeout(r, 100));
    }
    // Cut while runs are spread over the stages: some answered, most still executing.
    await waitFor(() => telegram.sent.length > 0 || undefined, { what: 'a first reply' });
    await proxy.cut();
    const before = await runs();
    expect(before).toHaveLength(RUNS);
    expect(before.filter((r) => r.state !== 'COMPLETED').length).toBeGreaterThan(0);

    // Ingress cannot make a message durable now: a 503 the channel retries, not a 500.
    const refused = await post(4_100_000, 'while away', 9_999);
    expect(refused.status).toBe(503);
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(await refused.json()).toEqual({
      error: { code: 'DATABASE_UNAVAILABLE', message: expect.any(String) },
    });

    await new Promise((r) => setTimeout(r, OUTAGE_MS));
    expect((await runs()).filter((r) => r.state === 'FAILED')).toEqual([]);
    await proxy.restore();

    // Telegram redelivers the refused update; the sweeper runs as it would in production.
    expect((await post(4_100_000, 'while away', 9_999)).status).toBe(200);
    const sweeping = setInterval(() => void pipeline.sweep(5000).catch(() => {}), 1000);
    try {
      const settled = await waitFor(
        async () => {
          const now = await runs();
          return now.every((r) => r.state === 'COMPLETED' || r.state === 'FAILED') && now;
        },
        { what: 'every run to finish', timeoutMs: 90_000, intervalMs: 250 },
      );
      expect(settled.filter((r) => r.state !== 'COMPLETED')).toEqual([]);
      expect(settled).toHaveLength(RUNS + 1);
    } finally {
      clearInterval(sweeping);
    }
    for (const chat of [...chats, 4_100_000]) {
      expect(telegram.sent.filter((m) => m.chat_id === String(chat))).toHaveLength(1);
    }
    const { rows: ledger } = await owner.query<{ status: string; n: number }>(
      `SELECT status, count(*)::int AS n FROM outbound_messages WHERE kind = 'reply' GROUP BY status`,
    );
    expect(ledger).toEqual([{ status: 'sent', n: RUNS + 1 }]);
  }, 240_000);
});
