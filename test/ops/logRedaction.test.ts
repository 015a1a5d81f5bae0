import { connect } from 'node:net';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import Koa from 'koa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { errorMiddleware } from '../../ingress/errorMiddleware.ts';
import { BODY_LIMIT_BYTES } from '../../ingress/readBody.ts';
import { createLogger } from '../../ops/createLogger.ts';
import { startLineServer } from '../fakes/lineServer.ts';
import { startTelegramServer } from '../../ops/fakes/telegramServer.ts';
import { applyTestTenant, pipelineTenant, TEST_SECRETS } from '../../ops/fakes/pipelineTenant.ts';
import { startPipeline, type Pipeline } from '../helpers/startPipeline.ts';
import { useTestDatabase } from '../helpers/testDatabase.ts';
import { useRedisPrefix } from '../helpers/useRedisPrefix.ts';
import { waitFor } from '../helpers/waitFor.ts';

const db = useTestDatabase();
const prefix = useRedisPrefix();
const PROJECT = 'acme';

/** Every line the web process's logger writes, as it writes it. */
const lines: string[] = [];
const logger = createLogger({
  level: 'debug',
  name: 'web',
  destination: new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      done();
    },
  }),
});

let telegram: Awaited<ReturnType<typeof startTelegramServer>>;
let line: Awaited<ReturnType<typeof startLineServer>>;
let pipeline: Pipeline;
let apiKey: string;

beforeAll(async () => {
  telegram = await startTelegramServer();
  line = await startLineServer();
  pipeline = await startPipeline({ pool: db().pool, prefix, workers: false, logger });
  await applyTestTenant(
    { pool: db().pool, logger },
    pipelineTenant({
      projectId: PROJECT,
      telegramApiRoot: telegram.apiRoot,
      lineBaseUrl: line.baseUrl,
    }),
  );
  for (const [name, value] of Object.entries(TEST_SECRETS))
    await pipeline.setSecret(PROJECT, name, value);
  apiKey = await pipeline.createKey(PROJECT);
});

afterAll(async () => {
  await pipeline?.close();
  await Promise.all([telegram?.close(), line?.close()]);
});

/**
 * The forms a value takes when a logger prints the bytes that carried it: as is, escaped,
 * as the decimal byte list JSON makes of a Buffer, as hex, and as base64 at each of the three
 * alignments it can sit at inside a longer packet.
 */
function encodingsOf(value: string): string[] {
  const bytes = [...Buffer.from(value, 'utf8')];
  const forms = [
    value,
    encodeURIComponent(value),
    JSON.stringify(value).slice(1, -1),
    bytes.join(','),
    bytes.join(', '),
    Buffer.from(value).toString('hex'),
    Buffer.from(value).toString('hex').toUpperCase(),
  ];
  for (let shift = 0; shift < 3; shift += 1) {
    const padded = Buffer.concat([Buffer.alloc(shift, 0x20), Buffer.from(value)]);
    // Skip the characters that mix the padding in, and the last (possibly padded) group.
    const whole = padded.toString('base64');
    const inner = whole.slice(Math.ceil((shift * 4) / 3) + 1, -4);
    forms.push(inner, inner.replace(/\+/g, '-').replace(/\//g, '_'));
  }
  return forms.filter((f) => f.length >= 8);
}

/** Sends raw bytes over a fresh connection and returns whatever came back before it closed. */
function sendRaw(raw: string | Buffer): Promise<string> {
  const { port } = new URL(pipeline.url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), '127.0.0.1');
    let answer = '';
    socket.on('data', (d: Buffer) => (answer += d.toString('latin1')));
    socket.on('error', (error: NodeJS.ErrnoException) =>
      error.code === 'ECONNRESET' || error.code === 'EPIPE' ? resolve(answer) : reject(error),
    );
    socket.on('close', () => resolve(answer));
    socket.setTimeout(10_000, () => socket.destroy());
    socket.end(raw);
  });
}

/** The credentials a request below carries, by name. */
function credentials(): Record<string, string> {
  return {
    apiKey,
    telegramWebhookSecret: TEST_SECRETS['tg-webhook'],
    bearerInBody: 'body-secret-value-9f8e7d6c5b4a',
  };
}

function expectNoCredentialLogged() {
  const log = lines.join('\n');
  for (const [name, value] of Object.entries(credentials())) {
    for (const form of encodingsOf(value)) {
      expect(log.includes(form), `${name} appears in the log as ${JSON.stringify(form)}`).toBe(
        false,
      );
    }
  }
}

describe('the web log', () => {
  // Regression (issue 12, item 2): a request the HTTP parser refused was logged with
  // err.rawPacket, its bytes as a decimal array, so API keys and webhook secrets were in the
  // log where a grep for them found nothing.
  it('holds no credential a malformed request carried, in any encoding', async () => {
    const api = `/v1/projects/${PROJECT}/messages`;
    const telegramPath = `/webhooks/telegram/${PROJECT}/tg`;
    const json = JSON.stringify({ text: 'hello', token: credentials().bearerInBody });
    const before = lines.length;
    const answers = await Promise.all([
      // Data after `Connection: close`: the request is dispatched, then the parser fails.
      sendRaw(
        `POST ${api} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${apiKey}\r\n` +
          `Content-Type: application/json\r\nConnection: close\r\n` +
          `Content-Length: ${json.length}\r\n\r\n${json}GET / HTTP/1.1\r\nAuthorization: Bearer ${apiKey}\r\n\r\n`,
      ),
      sendRaw(
        `POST ${telegramPath} HTTP/1.1\r\nHost: x\r\n` +
          `X-Telegram-Bot-Api-Secret-Token: ${TEST_SECRETS['tg-webhook']}\r\n` +
          `Content-Type: application/json\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}` +
          `X-Telegram-Bot-Api-Secret-Token: ${TEST_SECRETS['tg-webhook']}\r\n`,
      ),
      // A header the parser refuses, after the credential.
      sendRaw(
        `POST ${api} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${apiKey}\r\n` +
          `Bad Header: ${apiKey}\r\n\r\n`,
      ),
      // A body longer than its Content-Length on a kept-alive connection.
      sendRaw(
        `POST ${api} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${apiKey}\r\n` +
          `Content-Type: application/json\r\nContent-Length: 5\r\n\r\n${json}\r\n\r\n`,
      ),
      // Bad JSON and an oversized body, each with valid credentials.
      sendRaw(
        `POST ${api} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${apiKey}\r\n` +
          `Content-Type: application/json\r\nConnection: close\r\nContent-Length: 24\r\n\r\n` +
          `{"text": ${apiKey.slice(0, 14)}`,
      ),
      sendRaw(
        `POST ${telegramPath} HTTP/1.1\r\nHost: x\r\n` +
          `X-Telegram-Bot-Api-Secret-Token: ${TEST_SECRETS['tg-webhook']}\r\n` +
          `Content-Type: application/json\r\nConnection: close\r\n` +
          `Content-Length: ${BODY_LIMIT_BYTES + 10}\r\n\r\n{"x":"`,
      ),
    ]);
    expect(answers.every((a) => /^HTTP\/1\.1 4\d\d /.test(a))).toBe(true);
    // The parser's refusal of the first request is logged once its response has failed.
    await waitFor(() => lines.length > before);
    await new Promise((r) => setTimeout(r, 200));
    expect(lines.slice(before).some((l) => /Parse Error|HPE_/.test(l))).toBe(true);
    // The oversized body is refused by its route, and on a loaded machine that line can come
    // after the parser's: wait for it, so that the next test does not count it as its own.
    await waitFor(
      () =>
        lines
          .slice(before)
          .some((l) => l.includes('"request refused"') && l.includes('"BODY_TOO_LARGE"')) ||
        undefined,
      { what: "the oversized body's refusal in the log" },
    );
    expectNoCredentialLogged();
  });

  it('holds no credential from requests refused by a route: bad JSON, too large, wrong secret', async () => {
    const before = lines.length;
    const post = (path: string, headers: Record<string, string>, body: string) =>
      fetch(`${pipeline.url}${path}`, { method: 'POST', headers, body });
    const results = await Promise.all([
      post(
        `/v1/projects/${PROJECT}/messages`,
        { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
        `{"text": "${credentials().bearerInBody}`,
      ),
      post(
        `/v1/projects/${PROJECT}/messages`,
        { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
        JSON.stringify({ text: 'x'.repeat(BODY_LIMIT_BYTES), token: credentials().bearerInBody }),
      ),
      post(
        `/webhooks/telegram/${PROJECT}/tg`,
        { 'x-telegram-bot-api-secret-token': `${TEST_SECRETS['tg-webhook']}-wrong` },
        '{}',
      ),
      post(
        `/webhooks/telegram/${PROJECT}/tg`,
        {
          'x-telegram-bot-api-secret-token': TEST_SECRETS['tg-webhook'],
          'content-type': 'application/json',
        },
        `{"update_id": "${apiKey}"`,
      ),
    ]);
    expect(results.map((r) => r.status)).toEqual([400, 413, 401, 400]);
    // Each refusal is logged (at warn, with its code), and none of those lines holds one.
    const refused = await waitFor(() => {
      const found = lines.slice(before).filter((l) => l.includes('"request refused"'));
      return found.length >= 4 && found;
    });
    expect(refused.map((l) => (JSON.parse(l) as { code: string }).code).sort()).toEqual([
      'BODY_TOO_LARGE',
      'MALFORMED_JSON',
      'MALFORMED_JSON',
      'SIGNATURE_INVALID',
    ]);
    expectNoCredentialLogged();
  });

  it('holds nothing the client sent when a handler fails with an error that carries the request', async () => {
    const app = new Koa();
    app.on('error', (error: Error) => logger.error({ err: error }, 'response failed'));
    app.use(errorMiddleware({ logger }));
    app.use(async (ctx) => {
      const raw = Buffer.from(`Authorization: Bearer ${apiKey}`);
      // The shapes libraries hang a request on their errors: headers, body, raw bytes, a
      // config with headers, a cause carrying the same.
      const error = Object.assign(new Error('upstream refused the request'), {
        headers: ctx.headers,
        body: { token: credentials().bearerInBody },
        rawPacket: raw,
        config: { headers: { authorization: `Bearer ${apiKey}` } },
        request: { headers: ctx.headers },
        cause: Object.assign(new Error(`socket hang up (Authorization: Bearer ${apiKey})`), {
          rawPacket: raw,
          headers: ctx.headers,
        }),
      });
      throw error;
    });
    const server = app.listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    try {
      const before = lines.length;
      const res = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/x`, {
        headers: {
          authorization: `Bearer ${apiKey}`,
          'x-telegram-bot-api-secret-token': TEST_SECRETS['tg-webhook'],
        },
      });
      expect(res.status).toBe(500);
      const logged = lines.slice(before).join('\n');
      expect(logged).toContain('upstream refused the request');
      expect(logged).toContain('socket hang up');
      expectNoCredentialLogged();
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
    }
  });
});
