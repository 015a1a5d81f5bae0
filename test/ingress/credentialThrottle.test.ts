import { request } from 'node:http';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey } from '../../db/apiKeys.ts';
import { withProject } from '../../db/withProject.ts';
import { lineWebhook, telegramUpdate } from '../../ops/fakes/channelPayloads.ts';
import { startLineServer } from '../fakes/lineServer.ts';
import { startTelegramServer } from '../../ops/fakes/telegramServer.ts';
import { applyTestTenant, pipelineTenant, TEST_SECRETS } from '../../ops/fakes/pipelineTenant.ts';
import { startPipeline, type Pipeline } from '../helpers/startPipeline.ts';
import { tableCounts } from '../helpers/tableCounts.ts';
import { useTestDatabase } from '../helpers/testDatabase.ts';
import { useRedisPrefix } from '../helpers/useRedisPrefix.ts';

// Regression (issue 12, item 8): 8,000 wrong keys and tokens were all answered 401, none 429.

const db = useTestDatabase();
const prefix = useRedisPrefix();

const PER_SOURCE = 4;
const PER_PROJECT = 6;
const ADMIN_TOKEN = 'admin-token-for-the-throttle-test-0123';
const PROJECTS = ['acme', 'beta', 'gamma', 'delta', 'epsilon'] as const;

let telegram: Awaited<ReturnType<typeof startTelegramServer>>;
let line: Awaited<ReturnType<typeof startLineServer>>;
let pipeline: Pipeline;
let owner: pg.Client;
const keys: Record<string, string> = {};
let mcpKey: string;

beforeAll(async () => {
  telegram = await startTelegramServer();
  line = await startLineServer();
  pipeline = await startPipeline({
    pool: db().pool,
    prefix,
    workers: false,
    app: {
      adminToken: ADMIN_TOKEN,
      metrics: () => Promise.resolve('awooop_up 1\n'),
      credentialLimits: { prefix, perSource: PER_SOURCE, perProject: PER_PROJECT },
    },
  });
  owner = await db().owner();
  for (const projectId of PROJECTS) {
    await applyTestTenant(
      { pool: db().pool, logger: pipeline.ctx.logger },
      pipelineTenant({ projectId, telegramApiRoot: telegram.apiRoot, lineBaseUrl: line.baseUrl }),
    );
    for (const [name, value] of Object.entries(TEST_SECRETS))
      await pipeline.setSecret(projectId, name, value);
    keys[projectId] = await pipeline.createKey(projectId, ['client']);
  }
  mcpKey = (
    await withProject(db().pool, 'epsilon', (tx) =>
      createApiKey(tx, {
        projectId: 'epsilon',
        name: 'mcp',
        roles: ['mcp'],
        agent: 'helper',
        actor: 'test',
      }),
    )
  ).key;
});

afterAll(async () => {
  await pipeline?.close();
  await Promise.all([telegram?.close(), line?.close()]);
});

type Answer = { status: number; retryAfter: string | undefined; code: string | undefined };

/** One request from the loopback address `source` (each 127.x.y.z is its own client). */
function send(
  source: string,
  method: string,
  path: string,
  { headers = {}, body }: { headers?: Record<string, string>; body?: string } = {},
): Promise<Answer> {
  const url = new URL(path, pipeline.url);
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method,
        localAddress: source,
        headers: {
          ...headers,
          ...(body === undefined
            ? {}
            : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }),
        },
      },
      (res) => {
        let text = '';
        res.on('data', (chunk: Buffer) => (text += chunk.toString()));
        res.on('end', () => {
          let code: string | undefined;
          try {
            code = (JSON.parse(text) as { error?: { code?: string } }).error?.code;
          } catch {
            code = undefined;
          }
          const retryAfter = res.headers['retry-after'];
          resolve({ status: res.statusCode ?? 0, retryAfter, code });
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

const bearer = (key: string) => ({ authorization: `Bearer ${key}` });
const message = JSON.stringify({ text: 'hello', conversation_id: 'c-1', sender_id: 'u-1' });

function expectThrottled(answer: Answer) {
  expect(answer.status).toBe(429);
  expect(answer.code).toBe('TOO_MANY_FAILED_ATTEMPTS');
  const seconds = Number(answer.retryAfter);
  expect(Number.isInteger(seconds)).toBe(true);
  expect(seconds).toBeGreaterThanOrEqual(1);
  expect(seconds).toBeLessThanOrEqual(60);
}

describe('throttling failed credential attempts', () => {
  it('answers 429 + Retry-After to a source after N bad keys, for bad and good keys alike; another source is unaffected', async () => {
    const [a, b] = ['127.0.0.2', '127.0.0.3'];
    const path = '/v1/projects/acme/messages';
    for (let i = 0; i < PER_SOURCE; i += 1) {
      const bad = await send(a, 'POST', path, {
        headers: bearer(`awk_acme_guess${i}`),
        body: message,
      });
      expect(bad.status, `guess ${i}`).toBe(401);
    }
    const counts = await tableCounts(owner);
    expectThrottled(
      await send(a, 'POST', path, { headers: bearer('awk_acme_one_more'), body: message }),
    );
    expectThrottled(await send(a, 'POST', path, { headers: bearer(keys.acme!), body: message }));
    expect(await tableCounts(owner)).toEqual(counts);

    // Another source: its good key works, and a bad one is an ordinary 401.
    expect(
      (await send(b, 'POST', path, { headers: bearer(keys.acme!), body: message })).status,
    ).toBe(202);
    expect(
      (await send(b, 'POST', path, { headers: bearer('awk_acme_nope'), body: message })).status,
    ).toBe(401);
    // The counters are Redis keys under the app's prefix.
    expect(await pipeline.ctx.redis.exists(`${prefix}:auth-failures:source:127.0.0.2`)).toBe(1);
  });

  it('never holds back successful requests, however many', async () => {
    const source = '127.0.0.4';
    for (let i = 0; i < PER_SOURCE * 3; i += 1) {
      const ok = await send(source, 'GET', `/v1/projects/beta/runs/${crypto.randomUUID()}`, {
        headers: bearer(keys.beta!),
      });
      expect(ok.status).toBe(404); // authenticated: the run is unknown, not the key
    }
  });

  it('refuses, once a project is past its limit, the sources that failed against it, not the others', async () => {
    const path = '/v1/projects/gamma/messages';
    const [c, d, e] = ['127.0.1.1', '127.0.1.2', '127.0.1.3'];
    for (const source of [c, d]) {
      for (let i = 0; i < PER_PROJECT / 2; i += 1) {
        const bad = await send(source, 'POST', path, {
          headers: bearer('awk_gamma_x'),
          body: message,
        });
        expect(bad.status).toBe(401);
      }
    }
    // Each is below its own limit, but the project has seen PER_PROJECT failures.
    expectThrottled(await send(c, 'POST', path, { headers: bearer(keys.gamma!), body: message }));
    expectThrottled(await send(d, 'POST', path, { headers: bearer('awk_gamma_y'), body: message }));
    // A source with no failure is served: a flood of bad keys cannot lock a project's clients out.
    expect(
      (await send(e, 'POST', path, { headers: bearer(keys.gamma!), body: message })).status,
    ).toBe(202);
  });

  it('throttles webhook secrets, MCP keys and admin tokens the same way', async () => {
    const update = (n: number) =>
      JSON.stringify(telegramUpdate({ updateId: 90_000 + n, chatId: 5, text: 'hi' }));
    const signed = lineWebhook({
      events: [{ text: 'hi' }],
      channelSecret: TEST_SECRETS['line-secret'],
    });
    const mcpBody = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' });
    const mcpHeaders = { accept: 'application/json, text/event-stream' };
    const kinds = [
      {
        source: '127.0.2.1',
        bad: (i: number) =>
          send('127.0.2.1', 'POST', '/webhooks/telegram/delta/tg', {
            headers: { 'x-telegram-bot-api-secret-token': `wrong-${i}` },
            body: update(i),
          }),
        good: () =>
          send('127.0.2.1', 'POST', '/webhooks/telegram/delta/tg', {
            headers: { 'x-telegram-bot-api-secret-token': TEST_SECRETS['tg-webhook'] },
            body: update(99),
          }),
      },
      {
        source: '127.0.2.2',
        bad: () =>
          send('127.0.2.2', 'POST', '/webhooks/line/beta/ln', {
            headers: { 'x-line-signature': 'bm90IGEgc2lnbmF0dXJl' },
            body: signed.body,
          }),
        good: () =>
          send('127.0.2.2', 'POST', '/webhooks/line/beta/ln', {
            headers: { 'x-line-signature': signed.signature },
            body: signed.body,
          }),
      },
      {
        source: '127.0.2.3',
        bad: (i: number) =>
          send('127.0.2.3', 'POST', '/v1/projects/epsilon/agents/helper/mcp', {
            headers: { ...mcpHeaders, ...bearer(`awk_epsilon_${i}`) },
            body: mcpBody,
          }),
        good: () =>
          send('127.0.2.3', 'POST', '/v1/projects/epsilon/agents/helper/mcp', {
            headers: { ...mcpHeaders, ...bearer(mcpKey) },
            body: mcpBody,
          }),
      },
      {
        source: '127.0.2.4',
        bad: (i: number) =>
          send('127.0.2.4', 'GET', '/admin/queues', { headers: bearer(`not-the-token-${i}`) }),
        good: () => send('127.0.2.4', 'GET', '/admin/queues', { headers: bearer(ADMIN_TOKEN) }),
      },
    ];
    for (const kind of kinds) {
      for (let i = 0; i < PER_SOURCE; i += 1)
        expect((await kind.bad(i)).status, kind.source).toBe(401);
      const counts = await tableCounts(owner);
      expectThrottled(await kind.bad(PER_SOURCE));
      expectThrottled(await kind.good());
      expect(await tableCounts(owner)).toEqual(counts);
    }
    // The tokens are platform credentials, and so is the scrape: a source refused for guessing
    // the admin token is refused /metrics too, even with the token; another source is not.
    expectThrottled(await send('127.0.2.4', 'GET', '/metrics', { headers: bearer(ADMIN_TOKEN) }));
    expect(
      (await send('127.0.2.5', 'GET', '/metrics', { headers: bearer(ADMIN_TOKEN) })).status,
    ).toBe(200);
  });
});
