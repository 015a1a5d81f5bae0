import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import Koa from 'koa';
import type pg from 'pg';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { acceptInbound } from '../../ingress/acceptInbound.ts';
import { errorMiddleware } from '../../ingress/errorMiddleware.ts';
import { BODY_LIMIT_BYTES } from '../../ingress/readBody.ts';
import { ContractViolationError } from '../../pipeline/errors.ts';
import { telegramUpdate } from '../../ops/fakes/channelPayloads.ts';
import { startLineServer } from '../fakes/lineServer.ts';
import { startTelegramServer } from '../../ops/fakes/telegramServer.ts';
import { setUpTestTenant, TEST_SECRETS } from '../../ops/fakes/pipelineTenant.ts';
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

beforeAll(async () => {
  telegram = await startTelegramServer();
  line = await startLineServer();
  // No workers, so the resolve queue's counts show every job ingress enqueued.
  pipeline = await startPipeline({ pool: db().pool, prefix, workers: false });
  owner = await db().owner();
  await setUpTestTenant(pipeline, db().pool, {
    projectId: PROJECT,
    telegramApiRoot: telegram.apiRoot,
    lineBaseUrl: line.baseUrl,
  });
});

afterAll(async () => {
  await pipeline?.close();
  await Promise.all([telegram?.close(), line?.close()]);
});

/** Runs `act` and checks that no table row and no queued job came of it. */
async function expectNothingCreated<T>(act: () => Promise<T>): Promise<T> {
  const counts = await tableCounts(owner);
  const jobs = await pipeline.queues.queues.resolve.getJobCounts();
  const result = await act();
  expect(await tableCounts(owner)).toEqual(counts);
  expect(await pipeline.queues.queues.resolve.getJobCounts()).toEqual(jobs);
  return result;
}

/** A body sent chunked (no Content-Length), `bytes` long, in 64 KiB pieces. */
function chunkedBody(bytes: number): ReadableStream<Uint8Array> {
  const piece = Buffer.alloc(64 * 1024, 'x');
  let sent = 0;
  return new ReadableStream({
    pull(controller) {
      if (sent >= bytes) return controller.close();
      sent += piece.length;
      controller.enqueue(piece);
    },
  });
}

const postTelegram = (
  body: string | ReadableStream<Uint8Array>,
  headers: Record<string, string> = {},
) =>
  fetch(`${pipeline.url}/webhooks/telegram/${PROJECT}/tg`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'x-telegram-bot-api-secret-token': TEST_SECRETS['tg-webhook'],
      ...headers,
    },
    body,
    duplex: 'half',
  });

describe('acceptInbound', () => {
  // Regression: the normalized event was parsed with .parse(), so a bad field was a 500.
  it('refuses an event that breaks the ConversationEvent schema with a 400 naming the field', async () => {
    const error = await expectNothingCreated(() =>
      acceptInbound(
        {
          pool: db().pool,
          redis: pipeline.ctx.redis,
          redisPrefix: pipeline.ctx.redisPrefix,
          enqueue: pipeline.queues.enqueue,
          logger: pino({ level: 'silent' }),
          secrets: pipeline.ctx.secrets,
        },
        {
          projectId: PROJECT,
          channel: 'api',
          accountId: 'api',
          traceId: randomBytes(16).toString('hex'),
        },
        [
          {
            externalEventId: 'x'.repeat(201),
            sender: { id: 'someone', isBot: false },
            conversation: { kind: 'dm', id: 'c-1' },
            message: { text: 'hi' },
          },
        ],
      ).then(
        () => null,
        (e: unknown) => e,
      ),
    );
    expect(error).toBeInstanceOf(ContractViolationError);
    expect(error).toMatchObject({ status: 400, code: 'EVENT_INVALID' });
    expect((error as ContractViolationError).message).toMatch(/^externalEventId: /);
  });
});

describe('an oversized chunked body', () => {
  // Regression: the request was destroyed before answering, so the client saw a reset.
  it('gets a 413 with the error shape from the Telegram webhook, and nothing is created', async () => {
    const res = await expectNothingCreated(() => postTelegram(chunkedBody(BODY_LIMIT_BYTES * 3)));
    expect(res.status).toBe(413);
    expect(res.headers.get('connection')).toBe('close');
    expect(await res.json()).toEqual({
      error: { code: 'BODY_TOO_LARGE', message: `body is larger than ${BODY_LIMIT_BYTES} bytes` },
    });
  });

  it('gets a 413 with the error shape from the API, and nothing is created', async () => {
    const key = await pipeline.createKey(PROJECT);
    const res = await expectNothingCreated(() =>
      fetch(`${pipeline.url}/v1/projects/${PROJECT}/messages`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: chunkedBody(BODY_LIMIT_BYTES + 128 * 1024),
        duplex: 'half',
      }),
    );
    expect(res.status).toBe(413);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('BODY_TOO_LARGE');
  });

  it('leaves the server answering the next request', async () => {
    await postTelegram(chunkedBody(BODY_LIMIT_BYTES * 2)).then((r) => r.arrayBuffer());
    expect((await fetch(`${pipeline.url}/healthz`)).status).toBe(200);
  });
});

describe('a Telegram edited_message', () => {
  it('is acknowledged with 200 and makes no run', async () => {
    const original = telegramUpdate({ updateId: 501, chatId: 4242, text: 'helo' });
    const edit = telegramUpdate({ updateId: 502, chatId: 4242, text: 'hello', messageId: 1501 });
    const res = await expectNothingCreated(() =>
      postTelegram(JSON.stringify({ update_id: 502, edited_message: edit.message })),
    );
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ ok: true, runs: [], duplicate: false });
    // the message itself still makes its run
    const first = await postTelegram(JSON.stringify(original));
    expect(((await first.json()) as { runs: string[] }).runs).toHaveLength(1);
  });
});

describe('the error shape', () => {
  it('answers 405 with METHOD_NOT_ALLOWED for GET on a webhook', async () => {
    const res = await fetch(`${pipeline.url}/webhooks/telegram/x/y`);
    expect(res.status).toBe(405);
    expect(res.headers.get('allow')).toContain('POST');
    expect(await res.json()).toEqual({
      error: {
        code: 'METHOD_NOT_ALLOWED',
        message: 'GET is not allowed on /webhooks/telegram/x/y',
      },
    });
  });

  it('names an exposed HTTP error by its status, not always BAD_REQUEST', async () => {
    const app = new Koa();
    app.use(errorMiddleware({ logger: pino({ level: 'silent' }) }));
    app.use(() => {
      throw Object.assign(new Error('that is gone'), { status: 410, expose: true });
    });
    const server = app.listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    try {
      const res = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`);
      expect(res.status).toBe(410);
      expect(await res.json()).toEqual({ error: { code: 'GONE', message: 'that is gone' } });
    } finally {
      await new Promise((r) => server.close(r));
    }
  });
});
