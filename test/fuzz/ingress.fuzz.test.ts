import { request, METHODS } from 'node:http';
import { connect } from 'node:net';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey } from '../../db/apiKeys.ts';
import { withProject } from '../../db/withProject.ts';
import { lineSignature } from '../../ops/fakes/channelPayloads.ts';
import { setUpTestTenant, TEST_SECRETS } from '../../ops/fakes/pipelineTenant.ts';
import { startPipeline, type Pipeline } from '../helpers/startPipeline.ts';
import { useTestDatabase } from '../helpers/testDatabase.ts';
import { useRedisPrefix } from '../helpers/useRedisPrefix.ts';

// The fuzz corpus that found 500s for NUL and unpaired surrogates, 501s for unknown methods
// and empty bodies for parser refusals, kept as a test: per route a fixed number of bodies and
// headers generated from a seed (FUZZ_SEED to try another), sent one at a time. Every answer
// must be below 500; a refusal must be in the error shape and change no table row and queue
// no job. A 2xx comes only from a route where the request can be valid, and a genuine channel
// message (whatever its text holds) must be a 200: the channel would redeliver a refusal.

const SEED = Number(process.env.FUZZ_SEED ?? 0x5eed);
/** Generated requests per route. */
const PER_ROUTE = 40;

const db = useTestDatabase();
const prefix = useRedisPrefix();

const PROJECT = 'acme';
let pipeline: Pipeline;
let owner: pg.Client;
let clientKey: string;
let operatorKey: string;
let mcpKey: string;
/** One query that counts the rows of every table: the "nothing was written" fingerprint. */
let countsQuery: string;

beforeAll(async () => {
  pipeline = await startPipeline({ pool: db().pool, prefix, workers: false });
  owner = await db().owner();
  await setUpTestTenant(pipeline, db().pool, {
    projectId: PROJECT,
    telegramApiRoot: 'http://127.0.0.1:9/',
    lineBaseUrl: 'http://127.0.0.1:9/',
  });
  clientKey = await pipeline.createKey(PROJECT, ['client']);
  operatorKey = await pipeline.createKey(PROJECT, ['operator', 'approver']);
  mcpKey = (
    await withProject(db().pool, PROJECT, (tx) =>
      createApiKey(tx, {
        projectId: PROJECT,
        name: 'fuzz-mcp',
        roles: ['mcp'],
        agent: 'helper',
        actor: 'test',
      }),
    )
  ).key;
  const { rows } = await owner.query<{ table_name: string }>(
    "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1",
  );
  countsQuery = `SELECT ${rows.map((r) => `(SELECT count(*) FROM ${r.table_name}) AS "${r.table_name}"`).join(', ')}`;
});

afterAll(async () => {
  await pipeline?.close();
});

/** Row counts of every table and the resolve queue's job counts, in one value. */
async function fingerprint(): Promise<unknown> {
  const { rows } = await owner.query(countsQuery);
  return { rows: rows[0], jobs: await pipeline.queues.queues.resolve.getJobCounts() };
}

/** mulberry32: a tiny seeded PRNG, so a failing case is found again from its seed. */
function createRandom(seed: number) {
  let state = seed >>> 0;
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  const pick = <T>(items: readonly T[]): T => items[int(items.length)]!;
  return { next, int, pick, chance: (p: number) => next() < p };
}
type Random = ReturnType<typeof createRandom>;

const NASTY_STRINGS = [
  '\ud800',
  '\udfff',
  'a\u0000b',
  '\u0000',
  'tail\ud83d',
  '\udc00head',
  '',
  ' ',
  '\ufeff\u202e\uffff',
  '%00',
  "'; DROP TABLE runs; --",
  '\\u0000',
  '../../etc/passwd',
  '😀'.repeat(50),
  'x'.repeat(5000),
  '__proto__',
];
const NASTY_NUMBERS = [1e308, -1e308, 2 ** 53 + 2, 2 ** 63, -(2 ** 63), 0.5, -0, 5e-324, 1e21];

/** A random string of arbitrary UTF-16 code units, NUL and lone surrogates included. */
function randomString(r: Random): string {
  const length = r.int(24);
  let out = '';
  for (let i = 0; i < length; i += 1) {
    out += r.chance(0.3)
      ? String.fromCharCode(r.pick([0, 0xd800, 0xdbff, 0xdc00, 0xdfff, 0xfffe, 0x7f, 0x1f]))
      : String.fromCharCode(r.int(0x10000));
  }
  return out;
}

/** Some value of the wrong kind: a nasty string or number, another type, or deep nesting. */
function nastyValue(r: Random): unknown {
  switch (r.int(9)) {
    case 0:
    case 1:
      return r.pick(NASTY_STRINGS);
    case 2:
      return randomString(r);
    case 3:
      return r.pick(NASTY_NUMBERS);
    case 4:
      return r.pick([null, true, false, [], {}, '1', 1]);
    case 5: {
      let deep: unknown = r.pick(NASTY_STRINGS);
      for (let i = 0, depth = 50 + r.int(3000); i < depth; i += 1) deep = [deep];
      return deep;
    }
    case 6:
      return { [randomString(r)]: randomString(r), __proto__x: { polluted: true } };
    case 7:
      return Array.from({ length: r.int(200) }, () => r.pick(NASTY_STRINGS));
    default:
      return JSON.parse('{"__proto__":{"isAdmin":true}}') as unknown;
  }
}

/** A copy of `value` with one random leaf or key replaced, removed or added. */
function mutate(r: Random, value: unknown): unknown {
  if (value === null || typeof value !== 'object' || r.chance(0.15)) return nastyValue(r);
  const copy: Record<string, unknown> | unknown[] = Array.isArray(value)
    ? [...(value as unknown[])]
    : { ...(value as Record<string, unknown>) };
  const keys = Object.keys(copy);
  const key = keys.length > 0 ? r.pick(keys) : '0';
  const op = r.int(10);
  const target = copy as Record<string, unknown>;
  if (op === 0) delete target[key];
  else if (op === 1) target[randomString(r) || 'extra'] = nastyValue(r);
  else target[key] = mutate(r, target[key]);
  return copy;
}

/** The bytes sent for a body: mostly JSON of `value`, sometimes malformed on purpose. */
function encodeBody(r: Random, value: unknown): Buffer {
  const json = JSON.stringify(value) ?? 'null';
  switch (r.int(20)) {
    case 0:
      return Buffer.from(json.slice(0, r.int(json.length)));
    case 1:
      return Buffer.from(`${json},`);
    case 2:
      return Buffer.from(`\ufeff${json}`);
    case 3:
      return Buffer.concat([Buffer.from(json.slice(0, 5)), Buffer.from([0xed, 0xa0, 0x80, 0xff])]);
    case 4:
      return Buffer.from('');
    case 5:
      return Buffer.from(`${'['.repeat(20_000)}${']'.repeat(20_000)}`);
    case 6:
      return Buffer.from(r.pick(['null', '[]', '"text"', '1e999', '{"a":}', 'NaN', '{}']));
    default:
      return Buffer.from(json);
  }
}

const CONTENT_TYPES = [
  'application/json',
  'application/json; charset=utf-8',
  'text/plain',
  'application/x-www-form-urlencoded',
  'multipart/form-data; boundary=x',
  'application/json; charset=utf-16',
  undefined,
];

/** One generated request. */
type Case = {
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: Buffer;
  /** Whether the request may be genuinely valid, so a 2xx is a correct answer. */
  mayAccept: boolean;
  /**
   * Whether it is a genuine channel message (its text as random as the rest), which must be
   * accepted: a refusal would be redelivered by the channel.
   */
  mustAccept?: boolean;
};

type Answer = {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
};

function send(c: Case): Promise<Answer> {
  const { hostname, port } = new URL(pipeline.url);
  return new Promise((resolve, reject) => {
    const req = request(
      { host: hostname, port, method: c.method, path: c.path, headers: c.headers, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            text: Buffer.concat(chunks).toString('utf8'),
          }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(c.body);
  });
}

/** Sends `c` and checks its answer: below 500, the error shape on a refusal, nothing written. */
async function check(c: Case): Promise<number> {
  const before = await fingerprint();
  const answer = await send(c);
  const where = `${c.method} ${c.path} ${JSON.stringify(c.body?.toString('utf8').slice(0, 200))}`;
  expect(answer.status, where).toBeLessThan(500);
  if (answer.status >= 400) {
    expect(await fingerprint(), `${where}: refused, yet something was written`).toEqual(before);
    if (c.method !== 'HEAD') {
      const body = JSON.parse(answer.text) as { error?: { code?: unknown; message?: unknown } };
      expect(typeof body.error?.message, where).toBe('string');
      // The MCP endpoint's transport refusals are JSON-RPC errors (a numeric code), as MCP
      // clients expect; every other route's code is a SCREAMING_SNAKE name.
      if (typeof body.error?.code === 'number') expect(c.path, where).toMatch(/\/mcp$/);
      else expect(body.error?.code, where).toMatch(/^[A-Z][A-Z0-9_]*$/);
    }
  } else {
    expect(c.mayAccept, `${where}: answered ${answer.status}`).toBe(true);
  }
  if (c.mustAccept) expect(answer.status, `${where}: a genuine message`).toBe(200);
  if (answer.status === 405) expect(answer.headers.allow, where).toBeTruthy();
  return answer.status;
}

function baseHeaders(r: Random, extra: Record<string, string>): Record<string, string> {
  const contentType = r.pick(CONTENT_TYPES);
  return {
    ...(contentType ? { 'content-type': contentType } : {}),
    ...(r.chance(0.2) ? { traceparent: randomString(r).replace(/[^\x20-\x7e]/g, 'z') } : {}),
    ...extra,
  };
}

/** Path segments no encoder makes: a NUL, a lone surrogate's bytes, broken escapes. */
const RAW_SEGMENTS = ['%00', '%ED%A0%80', '%ZZ', '%', '..', '%2e%2e', 'a%00b', '%FF', ''];

/** A path segment: usually the real one, sometimes a random or hostile one. */
function segment(r: Random, real: string): string {
  if (r.chance(0.92)) return real;
  if (r.chance(0.3)) return r.pick(RAW_SEGMENTS);
  return encodeSegment(r.chance(0.5) ? r.pick(NASTY_STRINGS) : randomString(r));
}

/** Percent-encoded (a lone surrogate, which has no UTF-8, as U+FFFD). */
function encodeSegment(text: string): string {
  return encodeURIComponent(text.toWellFormed());
}

let updateId = 10_000;

function telegramCase(r: Random): Case {
  updateId += 1;
  const update = {
    update_id: updateId,
    message: {
      message_id: updateId,
      date: 1_700_000_000,
      chat: { id: 4200 + r.int(5), type: 'private', first_name: 'Ada' },
      from: { id: 4200 + r.int(5), is_bot: false, first_name: randomString(r) || 'Ada' },
      text: r.chance(0.5) ? randomString(r) : 'hello',
    },
  };
  const intact = r.chance(0.4);
  const body = intact ? Buffer.from(JSON.stringify(update)) : encodeBody(r, mutate(r, update));
  const signed = r.chance(0.85);
  const secret = signed
    ? TEST_SECRETS['tg-webhook']
    : randomString(r).replace(/[^\x21-\x7e]/g, 'q');
  const path = `/webhooks/telegram/${segment(r, PROJECT)}/${segment(r, 'tg')}`;
  return {
    method: 'POST',
    path,
    headers: baseHeaders(r, { 'x-telegram-bot-api-secret-token': secret }),
    body,
    mayAccept: true,
    mustAccept: intact && signed && path === `/webhooks/telegram/${PROJECT}/tg`,
  };
}

function lineCase(r: Random): Case {
  const event = {
    type: 'message',
    mode: 'active',
    webhookEventId: `01FUZZ${r.int(1e9)}`,
    timestamp: 1_700_000_000_000,
    replyToken: `tok${r.int(1e9)}`,
    source: { type: 'user', userId: `U${r.int(1e9)}` },
    message: { type: 'text', id: String(r.int(1e9)), text: randomString(r) || 'hi' },
  };
  const webhook = { destination: 'Udest', events: [event] };
  const intact = r.chance(0.4);
  const body = intact ? Buffer.from(JSON.stringify(webhook)) : encodeBody(r, mutate(r, webhook));
  const signed = r.chance(0.85);
  const signature = signed ? lineSignature(body, TEST_SECRETS['line-secret']) : 'bad=';
  const path = `/webhooks/line/${segment(r, PROJECT)}/${segment(r, 'ln')}`;
  return {
    method: 'POST',
    path,
    headers: baseHeaders(r, { 'x-line-signature': signature }),
    body,
    mayAccept: true,
    mustAccept: intact && signed && path === `/webhooks/line/${PROJECT}/ln`,
  };
}

function apiMessageCase(r: Random): Case {
  const message = {
    text: r.chance(0.5) ? randomString(r) : 'hello',
    ...(r.chance(0.3) ? { conversation_id: randomString(r) } : {}),
    ...(r.chance(0.3) ? { sender_id: randomString(r) } : {}),
  };
  const idem = r.chance(0.3)
    ? { 'idempotency-key': randomString(r).replace(/[^\x20-\x7e]/g, '') || 'k' }
    : {};
  return {
    method: 'POST',
    path: `/v1/projects/${segment(r, PROJECT)}/messages`,
    headers: baseHeaders(r, {
      authorization: `Bearer ${r.chance(0.85) ? clientKey : 'awk_wrong'}`,
      ...idem,
    }),
    body: encodeBody(r, r.chance(0.4) ? message : mutate(r, message)),
    mayAccept: true,
  };
}

function approvalCase(r: Random): Case {
  const key = r.chance(0.8) ? operatorKey : clientKey;
  const id = r.chance(0.5)
    ? `00000000-0000-4000-8000-00000000000${r.int(10)}`
    : encodeSegment(randomString(r));
  if (r.chance(0.3)) {
    const query = new URLSearchParams({
      ...(r.chance(0.5) ? { status: r.pick(['pending', randomString(r)]) } : {}),
      ...(r.chance(0.5) ? { run: randomString(r) } : {}),
      ...(r.chance(0.5) ? { limit: r.pick(['0', '501', '-1', '1e3', randomString(r)]) } : {}),
    });
    return {
      method: 'GET',
      path: `/v1/projects/${segment(r, PROJECT)}/approvals?${query.toString()}`,
      headers: baseHeaders(r, { authorization: `Bearer ${key}` }),
      mayAccept: true,
    };
  }
  return {
    method: 'POST',
    path: `/v1/projects/${segment(r, PROJECT)}/approvals/${segment(r, id)}/${r.pick(['approve', 'reject'])}`,
    headers: baseHeaders(r, { authorization: `Bearer ${key}` }),
    body: encodeBody(r, mutate(r, { callSha256: 'a'.repeat(64) })),
    // No approval exists: any decision is refused.
    mayAccept: false,
  };
}

function mcpCase(r: Random): Case {
  const call = {
    jsonrpc: '2.0',
    id: r.int(1000),
    method: r.pick(['initialize', 'tools/list', 'tools/call', 'ping', randomString(r)]),
    params: {
      name: r.pick(['lookup', 'fake.lookup', randomString(r)]),
      arguments: { q: randomString(r) },
      protocolVersion: '2025-06-18',
      capabilities: {},
      clientInfo: { name: 'fuzz', version: '1' },
    },
  };
  return {
    method: 'POST',
    path: `/v1/projects/${segment(r, PROJECT)}/agents/${segment(r, 'helper')}/mcp`,
    headers: baseHeaders(r, {
      authorization: `Bearer ${r.chance(0.85) ? mcpKey : clientKey}`,
      accept: r.chance(0.8)
        ? 'application/json, text/event-stream'
        : r.pick(['application/json', '*/*', 'text/html']),
      ...(r.chance(0.5) ? { 'mcp-protocol-version': r.pick(['2025-06-18', '1999-01-01']) } : {}),
    }),
    body: encodeBody(r, r.chance(0.5) ? call : mutate(r, call)),
    mayAccept: true,
  };
}

const ROUTE_PATHS = [
  `/webhooks/telegram/${PROJECT}/tg`,
  `/webhooks/line/${PROJECT}/ln`,
  `/v1/projects/${PROJECT}/messages`,
  `/v1/projects/${PROJECT}/runs/00000000-0000-4000-8000-000000000000`,
  `/v1/projects/${PROJECT}/approvals`,
  `/v1/projects/${PROJECT}/approvals/00000000-0000-4000-8000-000000000000/approve`,
  `/v1/projects/${PROJECT}/agents/helper/mcp`,
  '/healthz',
  '/no/such/route',
];
/** Methods Node's server parses, but not CONNECT (a tunnel, not a request to a route). */
const PARSED_METHODS = METHODS.filter((m) => m !== 'CONNECT');

function methodCase(r: Random): Case {
  const method = r.pick(PARSED_METHODS);
  const path = r.pick(ROUTE_PATHS);
  return {
    method,
    path,
    headers: baseHeaders(r, {
      authorization: `Bearer ${r.pick([clientKey, operatorKey, mcpKey])}`,
    }),
    ...(['GET', 'HEAD'].includes(method) ? {} : { body: Buffer.from('{}') }),
    // OPTIONS lists what a path allows; a GET may read what exists.
    mayAccept: ['OPTIONS', 'GET', 'HEAD', 'POST'].includes(method),
  };
}

/** Raw bytes no HTTP client library would send. */
function rawRequest(r: Random): Buffer {
  const path = r.pick(ROUTE_PATHS);
  const host = 'Host: fuzz\r\n';
  switch (r.int(10)) {
    case 0:
      return Buffer.from(Array.from({ length: 1 + r.int(300) }, () => r.int(256)));
    case 1:
      return Buffer.from(
        `${r.pick(['GE T', 'G\u0000T', 'FOO', 'get', '123'])} ${path} HTTP/1.1\r\n${host}\r\n`,
      );
    case 2:
      return Buffer.from(`GET ${path} HTTP/${r.pick(['9.9', '1', 'x'])}\r\n${host}\r\n`);
    case 3:
      return Buffer.from(`POST ${path} HTTP/1.1\r\n${host}Bad Header: x\r\n\r\n`);
    case 4:
      return Buffer.from(
        `GET ${path} HTTP/1.1\r\n${host}X-Big: ${'a'.repeat(20_000 + r.int(20_000))}\r\n\r\n`,
      );
    case 5:
      return Buffer.from(
        `POST ${path} HTTP/1.1\r\n${host}Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}`,
      );
    case 6:
      return Buffer.from(
        `POST ${path} HTTP/1.1\r\n${host}Transfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n0\r\n\r\n`,
      );
    case 7:
      return Buffer.from(
        `POST ${path} HTTP/1.1\r\n${host}Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n`,
      );
    case 8:
      return Buffer.from(`GET ${path} HTTP/1.1\r\n${host}X-Value: a\u0000b\r\n\r\n`, 'latin1');
    default:
      return Buffer.from(`GET ${path}\u0000 HTTP/1.1\r\n${host}\r\n`, 'latin1');
  }
}

/** Sends raw bytes, half-closes, and reads until the server closes. */
function sendBytes(bytes: Buffer): Promise<string> {
  const { hostname, port } = new URL(pipeline.url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname);
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'ECONNRESET' || error.code === 'EPIPE') return;
      reject(error);
    });
    socket.on('close', () => resolve(Buffer.concat(chunks).toString('utf8')));
    socket.end(bytes);
  });
}

const ROUTES: [string, (r: Random) => Case][] = [
  ['the Telegram webhook', telegramCase],
  ['the LINE webhook', lineCase],
  ['the API message route', apiMessageCase],
  ['the approval routes', approvalCase],
  ['the MCP endpoint', mcpCase],
  ['every route, with any method Node parses', methodCase],
];

describe(`fuzzed requests (seed ${SEED}, ${PER_ROUTE} per route)`, () => {
  for (const [index, [name, generate]] of ROUTES.entries()) {
    it(`are never a 5xx, and refusals write nothing: ${name}`, async () => {
      const r = createRandom(SEED + index);
      const statuses = new Map<number, number>();
      for (let i = 0; i < PER_ROUTE; i += 1) {
        const status = await check(generate(r));
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
      }
      // The corpus reaches past the first check: not everything is one refusal.
      expect(statuses.size, JSON.stringify([...statuses])).toBeGreaterThan(1);
    });
  }

  it("are answered in the error shape when Node's HTTP parser refuses them", async () => {
    const r = createRandom(SEED + ROUTES.length);
    for (let i = 0; i < PER_ROUTE; i += 1) {
      const bytes = rawRequest(r);
      const before = await fingerprint();
      const raw = await sendBytes(bytes);
      const where = JSON.stringify(bytes.toString('latin1').slice(0, 120));
      expect(raw, where).toMatch(/^HTTP\/1\.1 [1-4]\d\d /);
      const status = Number(raw.slice(9, 12));
      if (status >= 400) {
        const body = raw.slice(raw.indexOf('\r\n\r\n') + 4);
        const parsed = JSON.parse(body) as { error: { code: string; message: string } };
        expect(parsed.error.code, where).toMatch(/^[A-Z][A-Z0-9_]*$/);
        expect(typeof parsed.error.message, where).toBe('string');
        expect(await fingerprint(), where).toEqual(before);
      }
    }
  });
});
