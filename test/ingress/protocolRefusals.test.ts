import { connect } from 'node:net';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setUpTestTenant, TEST_SECRETS } from '../../ops/fakes/pipelineTenant.ts';
import { startPipeline, type Pipeline } from '../helpers/startPipeline.ts';
import { tableCounts } from '../helpers/tableCounts.ts';
import { useTestDatabase } from '../helpers/testDatabase.ts';
import { useRedisPrefix } from '../helpers/useRedisPrefix.ts';

const db = useTestDatabase();
const prefix = useRedisPrefix();

let pipeline: Pipeline;
let owner: pg.Client;
/** Every line the pipeline logged, as written. */
const logLines: string[] = [];

const PROJECT = 'acme';
/** A credential a malformed request carries: it must never reach the log. */
const API_KEY = 'awk_live_0123456789abcdefSECRET';

beforeAll(async () => {
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      logLines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      done();
    },
  });
  pipeline = await startPipeline({
    pool: db().pool,
    prefix,
    workers: false,
    logger: pino({ level: 'debug' }, sink),
  });
  owner = await db().owner();
  await setUpTestTenant(pipeline, db().pool, {
    projectId: PROJECT,
    telegramApiRoot: 'http://127.0.0.1:9/',
    lineBaseUrl: 'http://127.0.0.1:9/',
  });
});

afterAll(async () => {
  await pipeline?.close();
});

/** An HTTP answer read off a raw socket: status, headers (lowercase names) and body. */
type RawAnswer = { status: number; headers: Record<string, string>; body: string };

/**
 * Sends `parts` on a fresh connection, each after the server answered the one before, and
 * reads until the server closes it. Resolves with all that came back ('' if nothing did).
 */
function sendRaw(...parts: (string | Buffer)[]): Promise<string> {
  const { port, hostname } = new URL(pipeline.url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname);
    const chunks: Buffer[] = [];
    const rest = [...parts];
    socket.on('data', (c: Buffer) => {
      chunks.push(c);
      const next = rest.shift();
      if (next !== undefined) socket.write(next);
    });
    // A reset after the answer was read still counts: what came back is what the client saw.
    socket.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'ECONNRESET' || error.code === 'EPIPE') return;
      reject(error);
    });
    socket.on('close', () => resolve(Buffer.concat(chunks).toString('utf8')));
    socket.write(rest.shift()!);
  });
}

function parseAnswer(raw: string): RawAnswer {
  const [head = '', ...rest] = raw.split('\r\n\r\n');
  const [statusLine = '', ...headerLines] = head.split('\r\n');
  const headers: Record<string, string> = {};
  for (const line of headerLines) {
    const at = line.indexOf(':');
    headers[line.slice(0, at).toLowerCase()] = line.slice(at + 1).trim();
  }
  return { status: Number(statusLine.split(' ')[1]), headers, body: rest.join('\r\n\r\n') };
}

/** Checks a raw answer: the status, the error shape with `code`, and that it closes. */
function expectErrorAnswer(raw: string, status: number, code: string) {
  const answer = parseAnswer(raw);
  expect(answer.status).toBe(status);
  expect(answer.headers['content-type']).toBe('application/json; charset=utf-8');
  expect(answer.headers.connection).toBe('close');
  expect(Number(answer.headers['content-length'])).toBe(Buffer.byteLength(answer.body));
  const body = JSON.parse(answer.body) as { error: { code: string; message: string } };
  expect(body).toEqual({ error: { code, message: expect.any(String) as string } });
  return body.error;
}

describe('a method no route implements', () => {
  // Regression: methods outside the router's short list (PROPFIND, PURGE, ...) were 501 Not
  // Implemented, where any other method a route does not take is 405 with Allow.
  for (const [method, path, allow] of [
    ['PROPFIND', `/webhooks/telegram/${PROJECT}/tg`, 'POST'],
    ['PROPFIND', `/webhooks/line/${PROJECT}/ln`, 'POST'],
    ['MKCOL', `/v1/projects/${PROJECT}/messages`, 'POST'],
    [
      'PURGE',
      `/v1/projects/${PROJECT}/approvals/00000000-0000-4000-8000-000000000000/approve`,
      'POST',
    ],
    ['PURGE', '/healthz', 'HEAD, GET'],
  ] as const) {
    it(`is 405 with Allow and the error shape: ${method} ${path}`, async () => {
      const counts = await tableCounts(owner);
      const res = await fetch(`${pipeline.url}${path}`, { method });
      expect(res.status).toBe(405);
      expect(res.headers.get('allow')).toBe(allow);
      expect(await res.json()).toEqual({
        error: { code: 'METHOD_NOT_ALLOWED', message: `${method} is not allowed on ${path}` },
      });
      expect(await tableCounts(owner)).toEqual(counts);
    });
  }

  it('is 404 on a path no route has, as any other method is', async () => {
    const res = await fetch(`${pipeline.url}/no/such/path`, { method: 'PROPFIND' });
    expect(res.status).toBe(404);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('NOT_FOUND');
  });
});

describe("a request Node's HTTP parser refuses", () => {
  // Regression: Node answered these itself, with a bare status line and an empty body.
  it('is 400 MALFORMED_REQUEST in the error shape for a malformed request line', async () => {
    const error = expectErrorAnswer(
      await sendRaw('GET /healthz HTTP/1.1 trailing\r\nHost: x\r\n\r\n'),
      400,
      'MALFORMED_REQUEST',
    );
    expect(error.message).toMatch(/HPE_[A-Z_]+/);
  });

  it('is 400 MALFORMED_REQUEST for a header with a bad name, without logging what was sent', async () => {
    const from = logLines.length;
    const raw = await sendRaw(
      `POST /v1/projects/${PROJECT}/messages HTTP/1.1\r\nHost: x\r\n` +
        `Authorization: Bearer ${API_KEY}\r\nBad Header: ${API_KEY}\r\n\r\n`,
    );
    expectErrorAnswer(raw, 400, 'MALFORMED_REQUEST');
    const logged = logLines.slice(from);
    expect(logged.some((l) => l.includes('HPE_INVALID_HEADER_TOKEN'))).toBe(true);
    for (const line of logged) {
      expect(line).not.toContain(API_KEY);
      expect(line).not.toContain('rawPacket');
    }
  });

  it('is 431 HEADERS_TOO_LARGE for headers over the limit', async () => {
    const raw = await sendRaw(
      `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(32 * 1024)}\r\n\r\n`,
    );
    expectErrorAnswer(raw, 431, 'HEADERS_TOO_LARGE');
  });

  it('is 413 CHUNK_EXTENSIONS_TOO_LARGE for chunk extensions over the limit, writing nothing', async () => {
    const counts = await tableCounts(owner);
    const raw = await sendRaw(
      `POST /webhooks/telegram/${PROJECT}/tg HTTP/1.1\r\nHost: x\r\n` +
        `X-Telegram-Bot-Api-Secret-Token: ${TEST_SECRETS['tg-webhook']}\r\n` +
        `Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n` +
        `2;${'e'.repeat(20 * 1024)}\r\n{}\r\n0\r\n\r\n`,
    );
    expectErrorAnswer(raw, 413, 'CHUNK_EXTENSIONS_TOO_LARGE');
    expect(await tableCounts(owner)).toEqual(counts);
  });

  it('is answered after a good request on the same kept-alive connection', async () => {
    const raw = await sendRaw(
      'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n',
      'NOT HTTP AT ALL\r\n\r\n',
    );
    expect(raw.startsWith('HTTP/1.1 200 OK\r\n')).toBe(true);
    const second = raw.slice(raw.indexOf('HTTP/1.1 400'));
    expectErrorAnswer(second, 400, 'MALFORMED_REQUEST');
  });

  // As Node's own answer does, the refusal covers a request the parser had already handed on
  // from the same packet: it is not answered on its own, so it must leave nothing behind.
  it('is 400 for a message followed by garbage in one packet, and that message makes no run', async () => {
    const key = await pipeline.createKey(PROJECT);
    const json = JSON.stringify({ text: 'pipelined' });
    const counts = await tableCounts(owner);
    const raw = await sendRaw(
      `POST /v1/projects/${PROJECT}/messages HTTP/1.1\r\nHost: x\r\n` +
        `Authorization: Bearer ${key}\r\nContent-Type: application/json\r\n` +
        `Content-Length: ${json.length}\r\n\r\n${json}NOT HTTP AT ALL\r\n\r\n`,
    );
    expectErrorAnswer(raw, 400, 'MALFORMED_REQUEST');
    // The route's own work was under way when the connection closed: let it settle.
    await new Promise((r) => setTimeout(r, 300));
    expect(await tableCounts(owner)).toEqual(counts);
  });

  it('leaves the server answering the next request', async () => {
    await sendRaw('\u0000\u0001\u0002\r\n\r\n');
    expect((await fetch(`${pipeline.url}/healthz`)).status).toBe(200);
  });
});
