import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startLineServer } from '../fakes/lineServer.ts';
import { lineWebhook, telegramUpdate } from '../../ops/fakes/channelPayloads.ts';
import { startModelServer } from '../fakes/modelServer.ts';
import { startTelegramServer } from '../../ops/fakes/telegramServer.ts';
import { applyTestTenant, pipelineTenant, TEST_SECRETS } from '../../ops/fakes/pipelineTenant.ts';
import { startPipeline, type Pipeline } from '../helpers/startPipeline.ts';
import { tableCounts } from '../helpers/tableCounts.ts';
import { useTestDatabase } from '../helpers/testDatabase.ts';
import { useRedisPrefix, wipeKeys } from '../helpers/useRedisPrefix.ts';
import { waitFor } from '../helpers/waitFor.ts';

const db = useTestDatabase();
const prefix = useRedisPrefix();

let telegram: Awaited<ReturnType<typeof startTelegramServer>>;
let line: Awaited<ReturnType<typeof startLineServer>>;
let model: Awaited<ReturnType<typeof startModelServer>>;
let fallbackModel: Awaited<ReturnType<typeof startModelServer>>;
let pipeline: Pipeline;
let owner: pg.Client;

const PROJECT = 'acme';
const SHADOW = 'quiet';
const SCHEMA = 'strict';

async function setUpProject(
  projectId: string,
  options: Partial<Parameters<typeof pipelineTenant>[0]> = {},
) {
  await applyTestTenant(
    { pool: db().pool, logger: pipeline.ctx.logger },
    pipelineTenant({
      projectId,
      telegramApiRoot: telegram.apiRoot,
      lineBaseUrl: line.baseUrl,
      modelBaseUrl: model.url,
      ...options,
    }),
  );
  for (const [name, value] of Object.entries(TEST_SECRETS))
    await pipeline.setSecret(projectId, name, value);
}

beforeAll(async () => {
  telegram = await startTelegramServer();
  line = await startLineServer();
  model = await startModelServer();
  fallbackModel = await startModelServer();
  pipeline = await startPipeline({ pool: db().pool, sweeperPool: db().sweeperPool, prefix });
  owner = await db().owner();
  await setUpProject(PROJECT, { fallbackBaseUrl: fallbackModel.url });
  await setUpProject(SHADOW, { mode: 'shadow' });
  await setUpProject(SCHEMA, {
    outputSchema: {
      type: 'object',
      required: ['answer'],
      additionalProperties: false,
      properties: { answer: { type: 'string', minLength: 1 } },
    },
  });
});

afterAll(async () => {
  await pipeline?.close();
  await Promise.all([telegram?.close(), line?.close(), model?.close(), fallbackModel?.close()]);
});

let nextUpdateId = 1000;
function postTelegram(
  projectId: string,
  update: object,
  secret: string = TEST_SECRETS['tg-webhook'],
) {
  return fetch(`${pipeline.url}/webhooks/telegram/${projectId}/tg`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-telegram-bot-api-secret-token': secret },
    body: JSON.stringify(update),
  });
}

async function runsOf(projectId: string) {
  const { rows } = await owner.query<{
    run_id: string;
    state: string;
    failure_code: string | null;
    run_seq: string;
  }>(
    'SELECT run_id, state, failure_code, run_seq FROM runs WHERE project_id = $1 ORDER BY run_seq',
    [projectId],
  );
  return rows;
}

async function settled(projectId: string, count: number) {
  return waitFor(
    async () => {
      const runs = await runsOf(projectId);
      return runs.length >= count &&
        runs.every((r) => r.state === 'COMPLETED' || r.state === 'FAILED')
        ? runs
        : false;
    },
    { what: `${count} finished runs in ${projectId}` },
  );
}

const sentTo = (chatId: string) => telegram.sent.filter((m) => String(m.chat_id) === chatId);

describe('a Telegram update', () => {
  it('becomes one run and one reply on the channel, with its timeline and audit trail', async () => {
    const chatId = '5001';
    const res = await postTelegram(
      PROJECT,
      telegramUpdate({ updateId: nextUpdateId++, chatId: Number(chatId), text: 'hello <world>' }),
    );
    expect(res.status).toBe(200);
    await waitFor(() => sentTo(chatId).length === 1 || undefined, { what: 'the reply' });
    const reply = sentTo(chatId)[0]!;
    expect(reply.text).toBe('model: hello &lt;world&gt;');
    expect(reply.parse_mode).toBe('HTML');
    expect(reply.token).toBe(TEST_SECRETS['tg-token']);
    const [run] = await settled(PROJECT, 1);
    expect(run!.state).toBe('COMPLETED');
    const transitions = await owner.query<{ to_state: string }>(
      'SELECT to_state FROM run_transitions WHERE run_id = $1 ORDER BY transition_id',
      [run!.run_id],
    );
    expect(transitions.rows.map((r) => r.to_state)).toEqual([
      'RECEIVED',
      'RESOLVED',
      'ADMITTED',
      'EXECUTED',
      'SANITIZED',
      'COMPLETED',
    ]);
    const audit = await owner.query<{ action: string; trace_id: string }>(
      'SELECT action, trace_id FROM audit_events WHERE run_id = $1 ORDER BY seq',
      [run!.run_id],
    );
    expect(audit.rows.map((r) => r.action)).toEqual([
      'run.received',
      'run.resolved',
      'run.admitted',
      'run.executed',
      'run.sanitized',
      'run.completed',
    ]);
    expect(new Set(audit.rows.map((r) => r.trace_id)).size).toBe(1);
    const ledger = await owner.query(
      'SELECT status, method FROM outbound_messages WHERE run_id = $1',
      [run!.run_id],
    );
    expect(ledger.rows).toEqual([{ status: 'sent', method: 'sendMessage' }]);
    // the model was asked with the agent's prompt and the user's text, and the configured key
    const request = model.requests.at(-1)!;
    expect(request.headers.authorization).toBe(`Bearer ${TEST_SECRETS['model-key']}`);
    expect(request.body.messages[0]?.content).toContain('helpful test agent');
    expect(request.body.messages.at(-1)).toEqual({ role: 'user', content: 'hello <world>' });
  });

  it('sent five times at once makes one run and one reply', async () => {
    const chatId = '5002';
    const update = telegramUpdate({
      updateId: nextUpdateId++,
      chatId: Number(chatId),
      text: 'only once',
    });
    const before = (await runsOf(PROJECT)).length;
    const answers = await Promise.all(
      Array.from({ length: 5 }, () => postTelegram(PROJECT, update)),
    );
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200, 200, 200]);
    await waitFor(() => sentTo(chatId).length === 1 || undefined, { what: 'the reply' });
    await settled(PROJECT, before + 1);
    // a late retry after completion still makes nothing new
    expect((await postTelegram(PROJECT, update)).status).toBe(200);
    await new Promise((r) => setTimeout(r, 300));
    expect((await runsOf(PROJECT)).length).toBe(before + 1);
    expect(sentTo(chatId)).toHaveLength(1);
  });

  it("waits out Telegram's 429 retry_after and then sends once", async () => {
    const chatId = '5003';
    telegram.failNext(1, { status: 429, retryAfter: 1, method: 'sendMessage' });
    const started = Date.now();
    await postTelegram(
      PROJECT,
      telegramUpdate({ updateId: nextUpdateId++, chatId: Number(chatId), text: 'slow down' }),
    );
    await waitFor(() => sentTo(chatId).length === 1 || undefined, { what: 'the reply after 429' });
    expect(Date.now() - started).toBeGreaterThanOrEqual(1000);
    await new Promise((r) => setTimeout(r, 300));
    expect(sentTo(chatId)).toHaveLength(1);
  });
});

describe('a LINE webhook', () => {
  it('answers each of its events once, by reply token', async () => {
    const { body, signature } = lineWebhook({
      channelSecret: TEST_SECRETS['line-secret'],
      events: [
        { userId: 'U00000000000000000000000000000001', text: 'first', replyToken: 'reply-token-1' },
        {
          userId: 'U00000000000000000000000000000002',
          text: 'second',
          replyToken: 'reply-token-2',
        },
      ],
    });
    const res = await fetch(`${pipeline.url}/webhooks/line/${PROJECT}/ln`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-line-signature': signature },
      body,
    });
    expect(res.status).toBe(200);
    await waitFor(() => line.replies.length >= 2 || undefined, { what: 'two LINE replies' });
    const byToken = Object.fromEntries(
      line.replies.map((r) => [r.replyToken, r.messages.map((m) => m.text)]),
    );
    expect(byToken).toEqual({
      'reply-token-1': ['model: first'],
      'reply-token-2': ['model: second'],
    });
    expect(line.replies[0]!.authorization).toBe(`Bearer ${TEST_SECRETS['line-token']}`);
    // the same webhook again (LINE redelivery) makes nothing new
    await fetch(`${pipeline.url}/webhooks/line/${PROJECT}/ln`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-line-signature': signature },
      body,
    });
    await new Promise((r) => setTimeout(r, 300));
    expect(line.replies).toHaveLength(2);
    expect(line.pushes).toHaveLength(0);
  });

  it('sent five times at once makes one run and one reply', async () => {
    const { body, signature } = lineWebhook({
      channelSecret: TEST_SECRETS['line-secret'],
      events: [
        { userId: 'U00000000000000000000000000000003', text: 'five', replyToken: 'reply-token-5' },
      ],
    });
    const post = () =>
      fetch(`${pipeline.url}/webhooks/line/${PROJECT}/ln`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-line-signature': signature },
        body,
      });
    const answers = await Promise.all(Array.from({ length: 5 }, post));
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200, 200, 200]);
    await waitFor(() => line.replies.some((r) => r.replyToken === 'reply-token-5') || undefined, {
      what: 'the reply',
    });
    await new Promise((r) => setTimeout(r, 300));
    expect(line.replies.filter((r) => r.replyToken === 'reply-token-5')).toHaveLength(1);
    const { rows } = await owner.query<{ n: string }>(
      `SELECT count(*) AS n FROM conversation_events WHERE body->'message'->>'text' = 'five'`,
    );
    expect(rows[0]!.n).toBe('1');
  });

  it('pushes with a retry key when the reply token no longer works', async () => {
    const userId = 'U00000000000000000000000000000004';
    line.expireReplyToken('reply-token-expired');
    const { body, signature } = lineWebhook({
      channelSecret: TEST_SECRETS['line-secret'],
      events: [{ userId, text: 'too late', replyToken: 'reply-token-expired' }],
    });
    await fetch(`${pipeline.url}/webhooks/line/${PROJECT}/ln`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-line-signature': signature },
      body,
    });
    await waitFor(() => line.pushes.find((p) => p.to === userId), { what: 'the push' });
    const push = line.pushes.find((p) => p.to === userId)!;
    expect(push.messages.map((m) => m.text)).toEqual(['model: too late']);
    expect(push.retryKey).toMatch(/^[0-9a-f-]{36}$/);
  });
});

describe('bad input', () => {
  // The tests before this one may leave a run finishing (its completion and audit row land
  // after the reply the test waited for); counting rows must start from a quiet database.
  beforeAll(async () => {
    await waitFor(
      async () => {
        const { rows } = await owner.query<{ n: string }>(`
          SELECT (SELECT count(*) FROM runs WHERE state NOT IN ('COMPLETED', 'FAILED'))
               + (SELECT count(*) FROM outbound_messages WHERE status IN ('queued', 'sending')) AS n`);
        return rows[0]!.n === '0' || undefined;
      },
      { what: 'earlier runs to finish' },
    );
  });

  async function expectNothingCreated(send: () => Promise<Response>, status: number, code: RegExp) {
    const before = await tableCounts(owner);
    const waiting = await pipeline.queues.queues.resolve.getJobCounts();
    const res = await send();
    expect(res.status).toBe(status);
    const body = (await res.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toMatch(code);
    expect(body.error.message.length).toBeGreaterThan(0);
    expect(await tableCounts(owner)).toEqual(before);
    expect(await pipeline.queues.queues.resolve.getJobCounts()).toEqual(waiting);
    return body.error;
  }
  const update = () => telegramUpdate({ updateId: nextUpdateId++, chatId: 5100, text: 'x' });

  it('a wrong or missing Telegram secret is 401', async () => {
    await expectNothingCreated(
      () => postTelegram(PROJECT, update(), 'not-the-secret'),
      401,
      /SIGNATURE_INVALID/,
    );
    await expectNothingCreated(
      () =>
        fetch(`${pipeline.url}/webhooks/telegram/${PROJECT}/tg`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(update()),
        }),
      401,
      /SIGNATURE_INVALID/,
    );
  });

  it('a LINE body that does not match its signature is 401', async () => {
    const { body, signature } = lineWebhook({
      channelSecret: TEST_SECRETS['line-secret'],
      events: [{ text: 'hi' }],
    });
    const tampered = body.replace('"hi"', '"hI"');
    await expectNothingCreated(
      () =>
        fetch(`${pipeline.url}/webhooks/line/${PROJECT}/ln`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-line-signature': signature },
          body: tampered,
        }),
      401,
      /SIGNATURE_INVALID/,
    );
  });

  it('an unknown project or account is 404', async () => {
    await expectNothingCreated(() => postTelegram('nobody', update()), 404, /NOT_FOUND/);
    await expectNothingCreated(
      () =>
        fetch(`${pipeline.url}/webhooks/telegram/${PROJECT}/ghost`, {
          method: 'POST',
          headers: { 'x-telegram-bot-api-secret-token': TEST_SECRETS['tg-webhook'] },
          body: '{}',
        }),
      404,
      /NOT_FOUND/,
    );
    // an account of another type is unknown too
    await expectNothingCreated(
      () =>
        fetch(`${pipeline.url}/webhooks/telegram/${PROJECT}/ln`, { method: 'POST', body: '{}' }),
      404,
      /NOT_FOUND/,
    );
  });

  it('malformed JSON is 400 and a body that is not an update names the field', async () => {
    const post = (body: string) =>
      fetch(`${pipeline.url}/webhooks/telegram/${PROJECT}/tg`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'x-telegram-bot-api-secret-token': TEST_SECRETS['tg-webhook'],
        },
        body,
      });
    await expectNothingCreated(() => post('{"update_id": 1,'), 400, /MALFORMED_JSON/);
    const error = await expectNothingCreated(() => post('{"update_id": "seven"}'), 400, /INVALID/);
    expect(error.message).toContain('update_id');
  });

  it('a body over the limit is 413', async () => {
    const huge = JSON.stringify({ update_id: 1, padding: 'x'.repeat(1024 * 1024 + 10) });
    await expectNothingCreated(
      () => postTelegram(PROJECT, JSON.parse(huge) as object),
      413,
      /BODY_TOO_LARGE/,
    );
  });
});

describe('shadow mode', () => {
  it('records a complete run and audit trail and makes no request to the channel', async () => {
    const requestsBefore = telegram.requests.length;
    await postTelegram(
      SHADOW,
      telegramUpdate({ updateId: nextUpdateId++, chatId: 5200, text: 'hush' }),
    );
    const [run] = await settled(SHADOW, 1);
    expect(run!.state).toBe('COMPLETED');
    const ledger = await owner.query('SELECT status FROM outbound_messages WHERE run_id = $1', [
      run!.run_id,
    ]);
    expect(ledger.rows).toEqual([{ status: 'suppressed' }]);
    const audit = await owner.query<{ action: string }>(
      'SELECT action FROM audit_events WHERE run_id = $1 ORDER BY seq',
      [run!.run_id],
    );
    expect(audit.rows.map((r) => r.action)).toContain('run.completed');
    const stored = await owner.query<{ mode: string; live: boolean; output: { text: string } }>(
      'SELECT mode, live, output FROM runs WHERE run_id = $1',
      [run!.run_id],
    );
    expect(stored.rows[0]).toMatchObject({
      mode: 'shadow',
      live: false,
      output: { text: 'model: hush' },
    });
    await new Promise((r) => setTimeout(r, 200));
    expect(telegram.requests.length).toBe(requestsBefore);
  });
});

describe('one session', () => {
  it('answers two messages that arrive while the first is executing, in order', async () => {
    const chatId = 5300;
    model.setDelay(800);
    try {
      await postTelegram(
        PROJECT,
        telegramUpdate({ updateId: nextUpdateId++, chatId, text: 'one' }),
      );
      await new Promise((r) => setTimeout(r, 200));
      await postTelegram(
        PROJECT,
        telegramUpdate({ updateId: nextUpdateId++, chatId, text: 'two' }),
      );
      await postTelegram(
        PROJECT,
        telegramUpdate({ updateId: nextUpdateId++, chatId, text: 'three' }),
      );
      await waitFor(() => sentTo(String(chatId)).length === 3 || undefined, {
        what: 'three replies',
      });
    } finally {
      model.setDelay(0);
    }
    expect(sentTo(String(chatId)).map((m) => m.text)).toEqual([
      'model: one',
      'model: two',
      'model: three',
    ]);
    // the later runs carried the earlier turns as history
    const third = model.requests.find((r) => r.body.messages.at(-1)?.content === 'three')!;
    expect(third.body.messages.slice(1).map((m) => m.content)).toEqual([
      'one',
      'model: one',
      'two',
      'model: two',
      'three',
    ]);
  });
});

describe('model routes and output', () => {
  it('fall back to the next provider when the primary fails', async () => {
    const chatId = '5400';
    model.failNext(1, { status: 500 });
    await postTelegram(
      PROJECT,
      telegramUpdate({ updateId: nextUpdateId++, chatId: Number(chatId), text: 'fallback please' }),
    );
    await waitFor(() => sentTo(chatId).length === 1 || undefined, { what: 'the reply' });
    expect(sentTo(chatId)[0]!.text).toBe('model: fallback please');
    expect(
      fallbackModel.requests.some((r) => r.body.messages.at(-1)?.content === 'fallback please'),
    ).toBe(true);
  });

  it('never delivers an output that fails the output schema; the user gets the short failure message', async () => {
    const chatId = '5401';
    model.respondNext({ content: '{"answer": "", "extra": true}' });
    await postTelegram(
      SCHEMA,
      telegramUpdate({ updateId: nextUpdateId++, chatId: Number(chatId), text: 'break it' }),
    );
    const [run] = await settled(SCHEMA, 1);
    expect(run).toMatchObject({ state: 'FAILED', failure_code: 'OUTPUT_SCHEMA_INVALID' });
    await waitFor(() => sentTo(chatId).length === 1 || undefined, { what: 'the failure notice' });
    expect(sentTo(chatId).map((m) => m.text)).toEqual([
      'Sorry, I could not finish that. The team has been told.',
    ]);
  });

  it('delivers the answer field of a schema-valid output', async () => {
    const chatId = '5402';
    await postTelegram(
      SCHEMA,
      telegramUpdate({ updateId: nextUpdateId++, chatId: Number(chatId), text: 'fine' }),
    );
    await waitFor(() => sentTo(chatId).length === 1 || undefined, { what: 'the reply' });
    expect(sentTo(chatId)[0]!.text).toBe('model: fine');
  });
});

describe('the API channel', () => {
  it('answers 202 with a run id, and the run completes with its output, timeline and events', async () => {
    const key = await pipeline.createKey(PROJECT);
    const headers = { authorization: `Bearer ${key}`, 'content-type': 'application/json' };
    const res = await fetch(`${pipeline.url}/v1/projects/${PROJECT}/messages`, {
      method: 'POST',
      headers: { ...headers, 'idempotency-key': 'order-42' },
      body: JSON.stringify({ text: 'status of order 42?' }),
    });
    expect(res.status).toBe(202);
    const { run_id } = (await res.json()) as { run_id: string };
    const again = await fetch(`${pipeline.url}/v1/projects/${PROJECT}/messages`, {
      method: 'POST',
      headers: { ...headers, 'idempotency-key': 'order-42' },
      body: JSON.stringify({ text: 'status of order 42?' }),
    });
    expect(await again.json()).toEqual({ run_id, duplicate: true });

    const events = await fetch(`${pipeline.url}/v1/projects/${PROJECT}/runs/${run_id}/events`, {
      headers,
    });
    expect(events.headers.get('content-type')).toContain('text/event-stream');
    const stream = await events.text();
    expect(stream).toContain('event: done');
    expect(stream).toContain('"to":"COMPLETED"');

    const view = (await (
      await fetch(`${pipeline.url}/v1/projects/${PROJECT}/runs/${run_id}`, { headers })
    ).json()) as Record<string, unknown>;
    expect(view).toMatchObject({
      run_id,
      state: 'COMPLETED',
      output: 'model: status of order 42?',
      failure: null,
    });
    expect((view.timeline as unknown[]).length).toBe(6);
    // nothing left the platform: the answer's ledger row is recorded as stored, once
    const ledger = await owner.query(
      'SELECT kind, status, method, attempts FROM outbound_messages WHERE run_id = $1',
      [run_id],
    );
    expect(ledger.rows).toEqual([{ kind: 'reply', status: 'sent', method: 'stored', attempts: 1 }]);
  });

  it("keeps a failed run's code on the run and writes no notice when there is no callback", async () => {
    const key = await pipeline.createKey(PROJECT);
    const headers = { authorization: `Bearer ${key}`, 'content-type': 'application/json' };
    model.failNext(1, { status: 400 });
    fallbackModel.failNext(1, { status: 400 });
    const res = await fetch(`${pipeline.url}/v1/projects/${PROJECT}/messages`, {
      method: 'POST',
      headers,
      body: JSON.stringify({ text: 'this one fails' }),
    });
    const { run_id } = (await res.json()) as { run_id: string };
    const view = await waitFor(
      async () => {
        const got = (await (
          await fetch(`${pipeline.url}/v1/projects/${PROJECT}/runs/${run_id}`, { headers })
        ).json()) as { state: string; failure: { code: string } | null };
        return got.state === 'FAILED' ? got : undefined;
      },
      { what: 'the failed run' },
    );
    expect(view.failure).toMatchObject({ code: 'MODEL_REJECTED' });
    const ledger = await owner.query('SELECT 1 FROM outbound_messages WHERE run_id = $1', [run_id]);
    expect(ledger.rowCount).toBe(0);
  });

  it('refuses a missing key, a key of another project, and a body without text', async () => {
    const other = await pipeline.createKey(SHADOW);
    const send = (auth: string | null, body: unknown) =>
      fetch(`${pipeline.url}/v1/projects/${PROJECT}/messages`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(auth ? { authorization: auth } : {}) },
        body: JSON.stringify(body),
      });
    const before = await tableCounts(owner);
    expect((await send(null, { text: 'hi' })).status).toBe(401);
    expect((await send(`Bearer ${other}`, { text: 'hi' })).status).toBe(401);
    const key = await pipeline.createKey(PROJECT);
    const afterKey = await tableCounts(owner);
    const bad = await send(`Bearer ${key}`, { txt: 'hi' });
    expect(bad.status).toBe(400);
    const error = ((await bad.json()) as { error: { message: string } }).error;
    expect(error.message).toMatch(/text: required/);
    expect(error.message).toMatch(/txt: unknown field/);
    expect(before.runs).toBe(afterKey.runs);
    expect(await tableCounts(owner)).toEqual(afterKey);
  });
});

describe('recovery', () => {
  it('completes every run exactly once after its queued jobs are wiped from Redis', async () => {
    await pipeline.stopWorkers();
    const chatIds = Array.from({ length: 6 }, (_, i) => 5500 + i);
    for (const chatId of chatIds) {
      await postTelegram(
        PROJECT,
        telegramUpdate({ updateId: nextUpdateId++, chatId, text: `batch ${chatId}` }),
      );
    }
    // every key of this test's prefix goes at once, as a FLUSHALL would take them
    await wipeKeys(prefix);
    pipeline.startWorkers();
    // a page of 2 makes the sweep page through all six
    const report = await pipeline.sweep(0, 2);
    expect(report.requeued).toBeGreaterThanOrEqual(chatIds.length);
    for (const chatId of chatIds) {
      await waitFor(() => sentTo(String(chatId)).length === 1 || undefined, {
        what: `the reply to ${chatId}`,
      });
    }
    await pipeline.sweep(0);
    await new Promise((r) => setTimeout(r, 300));
    for (const chatId of chatIds) expect(sentTo(String(chatId))).toHaveLength(1);
  });

  it('completes every run exactly once when Redis is wiped while a batch is in flight', async () => {
    model.setDelay(200);
    const chatIds = Array.from({ length: 10 }, (_, i) => 5600 + i);
    try {
      for (const chatId of chatIds) {
        await postTelegram(
          PROJECT,
          telegramUpdate({ updateId: nextUpdateId++, chatId, text: `flight ${chatId}` }),
        );
      }
      await waitFor(() => chatIds.some((id) => sentTo(String(id)).length > 0) || undefined, {
        what: 'the first replies of the batch',
      });
      // jobs waiting, active and delayed all go at once; the workers keep running
      await wipeKeys(prefix);
      await waitFor(
        async () => {
          await pipeline.sweep(0);
          return chatIds.every((id) => sentTo(String(id)).length >= 1) || undefined;
        },
        { what: 'every reply of the batch', timeoutMs: 90_000 },
      );
    } finally {
      model.setDelay(0);
    }
    await pipeline.sweep(0);
    await new Promise((r) => setTimeout(r, 500));
    for (const chatId of chatIds) expect(sentTo(String(chatId))).toHaveLength(1);
    const { rows } = await owner.query<{ state: string; n: string }>(
      `SELECT r.state, count(*) AS n FROM runs r JOIN conversation_events e USING (event_id)
        WHERE e.body->'message'->>'text' LIKE 'flight %' GROUP BY r.state`,
    );
    expect(rows).toEqual([{ state: 'COMPLETED', n: '10' }]);
  });
});
