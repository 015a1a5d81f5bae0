import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { telegramUpdate } from '../../ops/fakes/channelPayloads.ts';
import { startLineServer } from '../fakes/lineServer.ts';
import { startTelegramServer } from '../../ops/fakes/telegramServer.ts';
import { applyTestTenant, pipelineTenant, TEST_SECRETS } from '../../ops/fakes/pipelineTenant.ts';
import { startPipeline, type Pipeline } from '../helpers/startPipeline.ts';
import { tableCounts } from '../helpers/tableCounts.ts';
import { useTestDatabase } from '../helpers/testDatabase.ts';
import { useRedisPrefix } from '../helpers/useRedisPrefix.ts';

const db = useTestDatabase();
const prefix = useRedisPrefix();

let telegram: Awaited<ReturnType<typeof startTelegramServer>>;
let line: Awaited<ReturnType<typeof startLineServer>>;
let pipeline: Pipeline;
let owner: pg.Client;

const PROJECT = 'acme';
const OTHER = 'beta';

beforeAll(async () => {
  telegram = await startTelegramServer();
  line = await startLineServer();
  // No workers: these tests are about what ingress writes and who may read it.
  pipeline = await startPipeline({ pool: db().pool, prefix, workers: false });
  owner = await db().owner();
  for (const projectId of [PROJECT, OTHER]) {
    await applyTestTenant(
      { pool: db().pool, logger: pipeline.ctx.logger },
      pipelineTenant({ projectId, telegramApiRoot: telegram.apiRoot, lineBaseUrl: line.baseUrl }),
    );
    for (const [name, value] of Object.entries(TEST_SECRETS))
      await pipeline.setSecret(projectId, name, value);
  }
});

afterAll(async () => {
  await pipeline?.close();
  await Promise.all([telegram?.close(), line?.close()]);
});

type Answer = { status: number; body: Record<string, unknown> };

async function send(
  key: string,
  body: object,
  { idem, projectId = PROJECT }: { idem?: string; projectId?: string } = {},
): Promise<Answer> {
  const res = await fetch(`${pipeline.url}/v1/projects/${projectId}/messages`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${key}`,
      'content-type': 'application/json',
      ...(idem === undefined ? {} : { 'idempotency-key': idem }),
    },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

async function read(key: string, path: string, projectId = PROJECT) {
  return fetch(`${pipeline.url}/v1/projects/${projectId}${path}`, {
    headers: { authorization: `Bearer ${key}` },
  });
}

async function runCount() {
  const { rows } = await owner.query<{ n: string }>('SELECT count(*) AS n FROM runs');
  return Number(rows[0]!.n);
}

describe('Idempotency-Key on POST /messages', () => {
  it('answers a retry with the same body with the same run and duplicate: true', async () => {
    const key = await pipeline.createKey(PROJECT);
    const body = { text: 'where is order 7?', conversation_id: 'c-7', sender_id: 'u-7' };
    const first = await send(key, body, { idem: 'order-7' });
    expect(first.status).toBe(202);
    expect(first.body.duplicate).toBe(false);
    const before = await runCount();
    // the same canonical request, its keys in another order
    const again = await send(
      key,
      { sender_id: 'u-7', conversation_id: 'c-7', text: 'where is order 7?' },
      { idem: 'order-7' },
    );
    expect(again).toEqual({ status: 202, body: { run_id: first.body.run_id, duplicate: true } });
    expect(await runCount()).toBe(before);
  });

  it('refuses the key reused with a different body: 422 IDEMPOTENCY_KEY_REUSED, nothing created', async () => {
    const key = await pipeline.createKey(PROJECT);
    const body = { text: 'cancel order 8', conversation_id: 'c-8' };
    expect((await send(key, body, { idem: 'order-8' })).status).toBe(202);
    const counts = await tableCounts(owner);
    const jobs = await pipeline.queues.queues.resolve.getJobCounts();
    for (const changed of [
      { ...body, text: 'cancel order 9' },
      { ...body, conversation_id: 'c-9' },
      { ...body, sender_id: 'someone-else' },
      { ...body, account: 'api' },
    ]) {
      const answer = await send(key, changed, { idem: 'order-8' });
      expect(answer.status).toBe(422);
      expect(answer.body).toEqual({
        error: { code: 'IDEMPOTENCY_KEY_REUSED', message: expect.any(String) as string },
      });
    }
    expect(await tableCounts(owner)).toEqual(counts);
    expect(await pipeline.queues.queues.resolve.getJobCounts()).toEqual(jobs);
  });

  it('scopes the key to the API key that sent it: another key with the same value gets its own run', async () => {
    const [a, b] = [await pipeline.createKey(PROJECT), await pipeline.createKey(PROJECT)];
    const fromA = await send(a, { text: 'hello' }, { idem: 'shared-value' });
    const fromB = await send(b, { text: 'hello, from b' }, { idem: 'shared-value' });
    expect(fromA.status).toBe(202);
    expect(fromB.status).toBe(202);
    expect(fromB.body.duplicate).toBe(false);
    expect(fromB.body.run_id).not.toBe(fromA.body.run_id);
  });

  it('makes one run of five concurrent identical requests', async () => {
    const key = await pipeline.createKey(PROJECT);
    const before = await runCount();
    const answers = await Promise.all(
      Array.from({ length: 5 }, () => send(key, { text: 'only once' }, { idem: 'burst-1' })),
    );
    expect(answers.map((a) => a.status)).toEqual([202, 202, 202, 202, 202]);
    expect(new Set(answers.map((a) => a.body.run_id)).size).toBe(1);
    expect(answers.filter((a) => a.body.duplicate === false)).toHaveLength(1);
    expect(await runCount()).toBe(before + 1);
  });

  // Regression: `idem:<key>` outgrew the 200-character event id and failed as a 500.
  it('accepts a 200-character key', async () => {
    const key = await pipeline.createKey(PROJECT);
    const long = 'k'.repeat(200);
    const first = await send(key, { text: 'long key' }, { idem: long });
    expect(first.status).toBe(202);
    expect(await send(key, { text: 'long key' }, { idem: long })).toEqual({
      status: 202,
      body: { run_id: first.body.run_id, duplicate: true },
    });
    const { rows } = await owner.query<{ external_event_id: string }>(
      `SELECT e.external_event_id FROM conversation_events e JOIN runs r USING (event_id)
        WHERE r.run_id = $1`,
      [first.body.run_id],
    );
    expect(rows[0]!.external_event_id).toMatch(/^idem:[0-9a-f-]{36}:[0-9a-f]{64}$/);
  });
});

describe('reading runs', () => {
  it('lets a client key read only the runs it sent; operator and admin keys read them all', async () => {
    const mine = await pipeline.createKey(PROJECT);
    const someoneElse = await pipeline.createKey(PROJECT);
    const operator = await pipeline.createKey(PROJECT, ['operator']);
    const admin = await pipeline.createKey(PROJECT, ['admin']);
    const sent = await send(mine, { text: 'private question' });
    const runId = String(sent.body.run_id);

    expect((await read(mine, `/runs/${runId}`)).status).toBe(200);
    for (const path of [`/runs/${runId}`, `/runs/${runId}/events`]) {
      const res = await read(someoneElse, path);
      expect(res.status).toBe(404);
      expect(await res.json()).toEqual({
        error: { code: 'RUN_NOT_FOUND', message: expect.any(String) as string },
      });
    }
    for (const key of [operator, admin]) {
      const res = await read(key, `/runs/${runId}`);
      expect(res.status).toBe(200);
      expect(((await res.json()) as { run_id: string }).run_id).toBe(runId);
    }
  });

  it('hides a run that came from a channel webhook from client keys', async () => {
    const res = await fetch(`${pipeline.url}/webhooks/telegram/${PROJECT}/tg`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'x-telegram-bot-api-secret-token': TEST_SECRETS['tg-webhook'],
      },
      body: JSON.stringify(telegramUpdate({ updateId: 77, chatId: 4242, text: 'hi' })),
    });
    const { runs } = (await res.json()) as { runs: string[] };
    const runId = runs[0]!;
    expect((await read(await pipeline.createKey(PROJECT), `/runs/${runId}`)).status).toBe(404);
    const operator = await pipeline.createKey(PROJECT, ['operator']);
    expect((await read(operator, `/runs/${runId}`)).status).toBe(200);
  });

  it('keeps every run of another project 404, whatever the role', async () => {
    const sent = await send(await pipeline.createKey(PROJECT), { text: 'acme only' });
    const runId = String(sent.body.run_id);
    for (const roles of [['client'], ['operator'], ['admin']] as const) {
      const otherKey = await pipeline.createKey(OTHER, [...roles]);
      const res = await read(otherKey, `/runs/${runId}`, OTHER);
      expect(res.status).toBe(404);
    }
  });
});

describe('the default API account', () => {
  it('is required by name when the project has several, and nothing is created without it', async () => {
    const projectId = 'twoapi';
    const { tenant, artifacts } = pipelineTenant({
      projectId,
      telegramApiRoot: telegram.apiRoot,
      lineBaseUrl: line.baseUrl,
    });
    tenant.channels['api-b'] = { ...tenant.channels.api! };
    await applyTestTenant({ pool: db().pool, logger: pipeline.ctx.logger }, { tenant, artifacts });
    const key = await pipeline.createKey(projectId);
    const before = await tableCounts(owner);
    const unnamed = await send(key, { text: 'which account?' }, { projectId });
    expect(unnamed.status).toBe(400);
    expect(unnamed.body.error).toMatchObject({ code: 'BODY_INVALID' });
    expect(String((unnamed.body.error as { message: string }).message)).toMatch(
      /^account: required: the project has several API accounts \(api, api-b\)/,
    );
    expect(await tableCounts(owner)).toEqual(before);
    const named = await send(key, { text: 'this one', account: 'api-b' }, { projectId });
    expect(named.status).toBe(202);
  });
});
