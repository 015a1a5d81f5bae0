import type pg from 'pg';
import type { DatabasePool } from 'slonik';
import { deliver } from '../../pipeline/stages/deliver.ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lineWebhook, telegramUpdate } from '../../ops/fakes/channelPayloads.ts';
import { startLineServer } from '../fakes/lineServer.ts';
import { startModelServer } from '../fakes/modelServer.ts';
import { startTelegramServer } from '../../ops/fakes/telegramServer.ts';
import { applyTestTenant, pipelineTenant, TEST_SECRETS } from '../../ops/fakes/pipelineTenant.ts';
import { startPipeline, type Pipeline } from '../helpers/startPipeline.ts';
import { useTestDatabase } from '../helpers/testDatabase.ts';
import { useRedisPrefix } from '../helpers/useRedisPrefix.ts';
import { waitFor } from '../helpers/waitFor.ts';

// What deliver does when a send goes wrong: the ledger decides, never a second copy.
const db = useTestDatabase();
const prefix = useRedisPrefix();
const PROJECT = 'ledger';
/** A project whose channel sends a status message after 300 ms of executing. */
const SLOW = 'slow';

let telegram: Awaited<ReturnType<typeof startTelegramServer>>;
let line: Awaited<ReturnType<typeof startLineServer>>;
let model: Awaited<ReturnType<typeof startModelServer>>;
let pipeline: Pipeline;
let owner: pg.Client;
let nextUpdateId = 20_000;

beforeAll(async () => {
  telegram = await startTelegramServer();
  line = await startLineServer();
  model = await startModelServer();
  pipeline = await startPipeline({ pool: db().pool, sweeperPool: db().sweeperPool, prefix });
  owner = await db().owner();
  await applyTestTenant(
    { pool: db().pool, logger: pipeline.ctx.logger },
    pipelineTenant({
      projectId: PROJECT,
      telegramApiRoot: telegram.apiRoot,
      lineBaseUrl: line.baseUrl,
      modelBaseUrl: model.url,
    }),
  );
  await applyTestTenant(
    { pool: db().pool, logger: pipeline.ctx.logger },
    pipelineTenant({
      projectId: SLOW,
      telegramApiRoot: telegram.apiRoot,
      lineBaseUrl: line.baseUrl,
      modelBaseUrl: model.url,
      statusAfterMs: 300,
    }),
  );
  for (const projectId of [PROJECT, SLOW])
    for (const [name, value] of Object.entries(TEST_SECRETS))
      await pipeline.setSecret(projectId, name, value);
});

afterAll(async () => {
  await pipeline?.close();
  await Promise.all([telegram?.close(), line?.close(), model?.close()]);
});

async function post(chatId: number, text: string, fromId?: number, projectId = PROJECT) {
  const res = await fetch(`${pipeline.url}/webhooks/telegram/${projectId}/tg`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'x-telegram-bot-api-secret-token': TEST_SECRETS['tg-webhook'],
    },
    body: JSON.stringify(
      telegramUpdate({
        updateId: nextUpdateId++,
        chatId,
        text,
        ...(fromId ? { fromId } : {}),
      }),
    ),
  });
  expect(res.status).toBe(200);
}

type RunRow = { run_id: string; state: string; failure_code: string | null };
async function runOf(text: string): Promise<RunRow | undefined> {
  const { rows } = await owner.query<RunRow>(
    `SELECT r.run_id, r.state, r.failure_code FROM runs r
       JOIN conversation_events e ON e.event_id = r.event_id
      WHERE e.body->'message'->>'text' = $1`,
    [text],
  );
  return rows[0];
}
const finished = (text: string) =>
  waitFor(
    async () => {
      const run = await runOf(text);
      return run && (run.state === 'COMPLETED' || run.state === 'FAILED') ? run : undefined;
    },
    { what: `the run of "${text}" to finish`, timeoutMs: 90_000 },
  );
async function ledger(runId: string) {
  const { rows } = await owner.query<{ kind: string; status: string; error_code: string | null }>(
    'SELECT kind, status, error_code FROM outbound_messages WHERE run_id = $1 ORDER BY kind, chunk_index',
    [runId],
  );
  return rows;
}
const sentTo = (chatId: number) => telegram.sent.filter((m) => m.chat_id === String(chatId));

/**
 * Holds deliver back, sends what `send` sends, and returns the run of `text` once it is
 * SANITIZED: its answer is in the ledger and nothing has tried to send it.
 */
async function sanitizedBeforeDeliver(text: string, send: () => Promise<void>): Promise<RunRow> {
  await pipeline.stopWorkers();
  pipeline.startWorkers(['resolve', 'policy', 'execute', 'sanitize']);
  await send();
  return waitFor(
    async () => {
      const r = await runOf(text);
      return r?.state === 'SANITIZED' ? r : undefined;
    },
    { what: 'a sanitized run' },
  );
}

/** Leaves a run's chunks as a deliver worker SIGKILLed mid-call does: claimed once, lease run out. */
async function leaveToDeadSender(runId: string): Promise<void> {
  await owner.query(
    `UPDATE outbound_messages SET status = 'sending', attempts = 1,
            lease_until = now() - interval '1 second' WHERE run_id = $1`,
    [runId],
  );
}

describe('Telegram pacing', () => {
  // Regression: a group's 3 s spacing was longer than the in-process wait, and each deferral
  // reserved another slot, so a group's second message was deferred forever.
  it("answers two messages to one group, three seconds apart by Telegram's group limit", async () => {
    const group = -100_777;
    await post(group, 'group one', 501);
    await post(group, 'group two', 502);
    await waitFor(() => sentTo(group).length === 2 || undefined, {
      what: 'both group replies',
      timeoutMs: 90_000,
    });
    expect(sentTo(group).map((m) => m.text)).toEqual(['model: group one', 'model: group two']);
  });
});

describe('a send whose answer is lost', () => {
  it('is recorded uncertain and never sent again; the run completes', async () => {
    const chatId = 7101;
    telegram.failNext(1, { status: 0, method: 'sendMessage', delivered: true, hangUp: true });
    await post(chatId, 'lost answer');
    const run = await finished('lost answer');
    expect(run.state).toBe('COMPLETED');
    expect(await ledger(run.run_id)).toEqual([
      { kind: 'reply', status: 'uncertain', error_code: 'CHANNEL_UNCERTAIN' },
    ]);
    await new Promise((r) => setTimeout(r, 1500));
    expect(sentTo(chatId)).toHaveLength(1);
  });
});

describe('a sender that died holding a chunk', () => {
  it('leaves the chunk uncertain instead of sending a second copy', async () => {
    const chatId = 7201;
    const run = await sanitizedBeforeDeliver('taken over', () => post(chatId, 'taken over'));
    await leaveToDeadSender(run.run_id);
    pipeline.startWorkers(['deliver']);
    const done = await finished('taken over');
    expect(done.state).toBe('COMPLETED');
    expect(await ledger(run.run_id)).toEqual([
      { kind: 'reply', status: 'uncertain', error_code: 'SENDER_LOST' },
    ]);
    expect(sentTo(chatId)).toHaveLength(0);
  });
});

describe('a LINE reply whose sender died', () => {
  // Regression: the takeover's second claim is no first try, so the row went out as a push —
  // which X-Line-Retry-Key dedupes against pushes only, not against the reply that may have
  // gone out with the single-use token: the user could get the answer twice.
  it('is settled uncertain, not pushed: the reply may have gone out', async () => {
    const userId = 'U000000000000000000000000000077a1';
    const { body, signature } = lineWebhook({
      channelSecret: TEST_SECRETS['line-secret'],
      events: [{ userId, text: 'line taken over', replyToken: 'reply-token-taken-over' }],
    });
    const run = await sanitizedBeforeDeliver('line taken over', async () => {
      const res = await fetch(`${pipeline.url}/webhooks/line/${PROJECT}/ln`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-line-signature': signature },
        body,
      });
      expect(res.status).toBe(200);
    });
    // its deliver worker died during the reply call
    await leaveToDeadSender(run.run_id);
    pipeline.startWorkers(['deliver']);
    const done = await finished('line taken over');
    expect(done.state).toBe('COMPLETED');
    expect(await ledger(run.run_id)).toEqual([
      { kind: 'reply', status: 'uncertain', error_code: 'SENDER_LOST' },
    ]);
    expect(line.pushes.filter((p) => p.to === userId)).toHaveLength(0);
    expect(line.replies.filter((r) => r.replyToken === 'reply-token-taken-over')).toHaveLength(0);
  });
});

describe('a chunk the channel refuses', () => {
  it('fails the run and the user gets the failure notice, not the answer', async () => {
    const chatId = 7301;
    telegram.failNext(1, {
      status: 400,
      method: 'sendMessage',
      description: "Bad Request: can't parse entities",
    });
    await post(chatId, 'refused');
    const run = await finished('refused');
    expect(run).toMatchObject({ state: 'FAILED', failure_code: 'CHANNEL_REJECTED' });
    await waitFor(() => sentTo(chatId).length === 1 || undefined, { what: 'the failure notice' });
    expect(sentTo(chatId)[0]!.text).not.toContain('refused');
    // the fake records the notice before deliver settles its row
    await waitFor(
      async () =>
        (await ledger(run.run_id)).some((r) => r.kind === 'failure' && r.status === 'sent') ||
        undefined,
      { what: 'the notice settled' },
    );
    expect(await ledger(run.run_id)).toEqual([
      { kind: 'failure', status: 'sent', error_code: null },
      { kind: 'reply', status: 'failed', error_code: 'CHANNEL_REJECTED' },
    ]);
  });
});

describe('progress', () => {
  it('shows typing at once and one status message while a slow run executes, then the answer', async () => {
    const chatId = 7401;
    model.setDelay(1200);
    try {
      await post(chatId, 'slow one', undefined, SLOW);
      const run = await finished('slow one');
      expect(run.state).toBe('COMPLETED');
    } finally {
      model.setDelay(0);
    }
    expect(telegram.actions.filter((a) => a.chat_id === String(chatId))).toMatchObject([
      { action: 'typing' },
    ]);
    expect(sentTo(chatId).map((m) => m.text)).toEqual(['Working on it', 'model: slow one']);
  });

  it('sends no status message for a run that finishes before the delay', async () => {
    const chatId = 7402;
    await post(chatId, 'quick one', undefined, SLOW);
    await finished('quick one');
    await new Promise((r) => setTimeout(r, 500));
    expect(sentTo(chatId).map((m) => m.text)).toEqual(['model: quick one']);
  });
});

describe('a chunk sent while Postgres drops out', () => {
  // Regression (found by npm run chaos): a failure recording "sent" fell into the not-sent
  // path, put the row back to queued, and the retry sent the message a second time.
  it('is recorded sent once Postgres answers again, and never sent twice', async () => {
    const chatId = 7501;
    const run = await sanitizedBeforeDeliver('flaky db', () => post(chatId, 'flaky db'));
    const { rows } = await owner.query<{ trace_id: string }>(
      'SELECT trace_id FROM runs WHERE run_id = $1',
      [run.run_id],
    );
    // the first transaction begun after Telegram took the message fails, as a lost connection
    const real = pipeline.ctx.pool;
    let failed = false;
    const flaky = new Proxy(real, {
      get(target, property, receiver) {
        if (property !== 'transaction') return Reflect.get(target, property, receiver) as unknown;
        return (handler: Parameters<DatabasePool['transaction']>[0]) => {
          if (!failed && sentTo(chatId).length > 0) {
            failed = true;
            return Promise.reject(new Error('Connection terminated unexpectedly'));
          }
          return target.transaction(handler);
        };
      },
    });
    await deliver(
      { ...pipeline.ctx, pool: flaky },
      { projectId: PROJECT, runId: run.run_id, traceId: rows[0]!.trace_id, stage: 'deliver' },
    );
    expect(failed).toBe(true);
    pipeline.startWorkers(['deliver']);
    await pipeline.sweep(0);
    const done = await finished('flaky db');
    expect(done.state).toBe('COMPLETED');
    expect(await ledger(run.run_id)).toEqual([{ kind: 'reply', status: 'sent', error_code: null }]);
    await new Promise((r) => setTimeout(r, 500));
    expect(sentTo(chatId)).toHaveLength(1);
  });
});

describe('a send that did not happen while Postgres drops out', () => {
  /** Runs one deliver of `text`'s sanitized run by hand, on a context the test changes. */
  async function sanitized(chatId: number, text: string) {
    const run = await sanitizedBeforeDeliver(text, () => post(chatId, text));
    const { rows } = await owner.query<{ trace_id: string }>(
      'SELECT trace_id FROM runs WHERE run_id = $1',
      [run.run_id],
    );
    const job = {
      projectId: PROJECT,
      runId: run.run_id,
      traceId: rows[0]!.trace_id,
      stage: 'deliver' as const,
    };
    return { run, job };
  }
  async function claimState(runId: string) {
    const { rows } = await owner.query<{ status: string; attempts: number }>(
      'SELECT status, attempts FROM outbound_messages WHERE run_id = $1',
      [runId],
    );
    return rows;
  }
  async function resumeAndCheck(chatId: number, text: string, runId: string) {
    pipeline.startWorkers(['deliver']);
    await pipeline.sweep(0);
    const done = await finished(text);
    expect(done.state).toBe('COMPLETED');
    expect(await ledger(runId)).toEqual([{ kind: 'reply', status: 'sent', error_code: null }]);
    expect(sentTo(chatId).map((m) => m.text)).toEqual([`model: ${text}`]);
  }

  // Regression: the bot token was looked up after the row was claimed, so a lookup failing
  // while the database was away spent a claim (a LINE reply token, too) on a row never sent.
  it('looks the credential up before claiming, so a failed lookup leaves the row untouched', async () => {
    const chatId = 7601;
    const { run, job } = await sanitized(chatId, 'token lookup away');
    const secrets = {
      ...pipeline.ctx.secrets,
      resolve: () => Promise.reject(new Error('Connection terminated unexpectedly')),
    };
    await expect(deliver({ ...pipeline.ctx, secrets }, job)).rejects.toThrow(/terminated/);
    expect(await claimState(run.run_id)).toEqual([{ status: 'queued', attempts: 0 }]);
    await resumeAndCheck(chatId, 'token lookup away', run.run_id);
  });

  // Regression: putting an unsent row back to queued was tried once; with Postgres away it
  // stayed `sending` until its lease ran out, and the takeover settled it uncertain, unsent.
  it('puts an unsent row back to queued once Postgres answers, so the retry sends it', async () => {
    const chatId = 7602;
    const { run, job } = await sanitized(chatId, 'put back away');
    telegram.failNext(1, { status: 502, method: 'sendMessage' });
    const refused = () =>
      telegram.requests.some(
        (r) =>
          r.method === 'sendMessage' &&
          String(r.params.chat_id) === String(chatId) &&
          r.status >= 500,
      );
    // the first two transactions begun after Telegram refused the send fail, as a restart would
    const real = pipeline.ctx.pool;
    let failures = 0;
    const flaky = new Proxy(real, {
      get(target, property, receiver) {
        if (property !== 'transaction') return Reflect.get(target, property, receiver) as unknown;
        return (handler: Parameters<DatabasePool['transaction']>[0]) => {
          if (failures < 2 && refused()) {
            failures += 1;
            return Promise.reject(new Error('Connection terminated unexpectedly'));
          }
          return target.transaction(handler);
        };
      },
    });
    await expect(deliver({ ...pipeline.ctx, pool: flaky }, job)).rejects.toMatchObject({
      code: 'CHANNEL_UNAVAILABLE',
    });
    expect(failures).toBe(2);
    expect(await claimState(run.run_id)).toEqual([{ status: 'queued', attempts: 1 }]);
    await resumeAndCheck(chatId, 'put back away', run.run_id);
  });
});

describe('a run past its deadline at deliver', () => {
  /** A sanitized run of `text` whose deliver has not run, its deadline passed. */
  async function overdueSanitized(chatId: number, text: string) {
    const run = await sanitizedBeforeDeliver(text, () => post(chatId, text));
    await owner.query(
      `UPDATE runs SET deadline_at = now() - interval '1 second',
                       updated_at = now() - interval '1 minute' WHERE run_id = $1`,
      [run.run_id],
    );
    return run;
  }

  // Regression (found by npm run chaos): a deliver worker killed while its send went out left
  // the chunk `sending`; the sweep timed the run out, and the user got the answer and then
  // "Sorry, I could not finish that".
  it('is not timed out while its answer is in flight: deliver settles it, no notice follows', async () => {
    const chatId = 7701;
    const run = await overdueSanitized(chatId, 'overdue in flight');
    await leaveToDeadSender(run.run_id);
    const report = await pipeline.sweep(0);
    expect(report.timedOut).toBe(0);
    expect((await runOf('overdue in flight'))?.state).toBe('SANITIZED');
    pipeline.startWorkers(['deliver']);
    const done = await finished('overdue in flight');
    expect(done.state).toBe('COMPLETED');
    expect(await ledger(run.run_id)).toEqual([
      { kind: 'reply', status: 'uncertain', error_code: 'SENDER_LOST' },
    ]);
    await new Promise((r) => setTimeout(r, 500));
    expect(sentTo(chatId)).toHaveLength(0);
  });

  it('is timed out when nothing of its answer has gone out: the user gets the notice only', async () => {
    const chatId = 7702;
    const run = await overdueSanitized(chatId, 'overdue queued');
    const report = await pipeline.sweep(0);
    expect(report.timedOut).toBe(1);
    pipeline.startWorkers(['deliver']);
    const done = await finished('overdue queued');
    expect(done).toMatchObject({ state: 'FAILED', failure_code: 'RUN_TIMEOUT' });
    await waitFor(() => sentTo(chatId).length === 1 || undefined, { what: 'the failure notice' });
    await new Promise((r) => setTimeout(r, 500));
    expect(sentTo(chatId)[0]!.text).not.toContain('overdue queued');
    expect((await ledger(run.run_id)).map((r) => `${r.kind}:${r.status}`)).toEqual([
      'failure:sent',
      'reply:suppressed',
    ]);
  });
});
