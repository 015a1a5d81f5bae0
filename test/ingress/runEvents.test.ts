import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readMigrations } from '../../db/migrate.ts';
import { closeServer } from '../../ingress/closeServer.ts';
import { createAccountLookup } from '../../ingress/createAccountLookup.ts';
import { createApp, type App } from '../../ingress/createApp.ts';
import { startLineServer } from '../fakes/lineServer.ts';
import { startTelegramServer } from '../../ops/fakes/telegramServer.ts';
import { setUpTestTenant } from '../../ops/fakes/pipelineTenant.ts';
import { startPipeline, type Pipeline } from '../helpers/startPipeline.ts';
import { useTestDatabase } from '../helpers/testDatabase.ts';
import { useRedisPrefix } from '../helpers/useRedisPrefix.ts';
import { waitFor } from '../helpers/waitFor.ts';

const db = useTestDatabase();
const prefix = useRedisPrefix();

let telegram: Awaited<ReturnType<typeof startTelegramServer>>;
let line: Awaited<ReturnType<typeof startLineServer>>;
let pipeline: Pipeline;
let key: string;

const PROJECT = 'acme';

/** An app of this file's own (the harness keeps its app to itself), on a port of its own. */
async function serve(streamMaxMs?: number): Promise<{ app: App; server: Server; url: string }> {
  const app = createApp({
    pool: db().pool,
    redis: pipeline.ctx.redis,
    redisPrefix: prefix,
    logger: pipeline.ctx.logger,
    codeMigration: (await readMigrations()).at(-1)?.version ?? 0,
    enqueue: pipeline.queues.enqueue,
    accounts: createAccountLookup({ pool: db().pool, contracts: pipeline.ctx.contracts }),
    secrets: pipeline.ctx.secrets,
    channels: pipeline.ctx.channels,
    contracts: pipeline.ctx.contracts,
    queues: pipeline.queues.queues,
    streamMaxMs,
  });
  const server = app.listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  return { app, server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

let web: Awaited<ReturnType<typeof serve>>;

beforeAll(async () => {
  telegram = await startTelegramServer();
  line = await startLineServer();
  pipeline = await startPipeline({ pool: db().pool, prefix, workers: false });
  await setUpTestTenant(pipeline, db().pool, {
    projectId: PROJECT,
    telegramApiRoot: telegram.apiRoot,
    lineBaseUrl: line.baseUrl,
  });
  key = await pipeline.createKey(PROJECT);
  web = await serve();
});

afterAll(async () => {
  const t = Date.now();
  if (web) await closeServer(web.server, web.app);
  console.log('CLOSE', Date.now() - t, web.app.openStreams());
  await pipeline?.close();
  await Promise.all([telegram?.close(), line?.close()]);
});

const auth = () => ({ authorization: `Bearer ${key}` });

async function sendMessage(text: string): Promise<string> {
  const res = await fetch(`${web.url}/v1/projects/${PROJECT}/messages`, {
    method: 'POST',
    headers: { ...auth(), 'content-type': 'application/json' },
    body: JSON.stringify({ text }),
  });
  expect(res.status).toBe(202);
  return ((await res.json()) as { run_id: string }).run_id;
}

type SseEvent = { id?: string; event: string; data: unknown };

/** The events of a server-sent event stream's text; comment lines are dropped. */
function parseSse(text: string): SseEvent[] {
  return text
    .split('\n\n')
    .map((block) => block.split('\n').filter((l) => l && !l.startsWith(':')))
    .filter((lines) => lines.length > 0)
    .map((lines) => {
      const field = (name: string) =>
        lines.find((l) => l.startsWith(`${name}: `))?.slice(name.length + 2);
      const id = field('id');
      return {
        ...(id === undefined ? {} : { id }),
        event: field('event') ?? 'message',
        data: JSON.parse(field('data') ?? 'null') as unknown,
      };
    });
}

const eventsUrl = (base: string, runId: string) =>
  `${base}/v1/projects/${PROJECT}/runs/${runId}/events`;

describe('GET /runs/:id/events', () => {
  it('streams a completing run: each transition in order with its id, then done, then closes', async () => {
    pipeline.startWorkers();
    try {
      const runId = await sendMessage('follow me');
      const res = await fetch(eventsUrl(web.url, runId), { headers: auth() });
      expect(res.headers.get('content-type')).toContain('text/event-stream');
      // text() resolves only once the server has ended the stream
      const events = parseSse(await res.text());
      const transitions = events.filter((e) => e.event === 'transition');
      expect(transitions.map((e) => (e.data as { to: string }).to)).toEqual([
        'RECEIVED',
        'RESOLVED',
        'ADMITTED',
        'EXECUTED',
        'SANITIZED',
        'COMPLETED',
      ]);
      expect(transitions.map((e) => e.id)).toEqual(['1', '2', '3', '4', '5', '6']);
      expect(events.at(-1)).toMatchObject({
        event: 'done',
        data: { state: 'COMPLETED', output: 'echo: follow me', failure: null },
      });

      // a reconnect with Last-Event-ID gets only what came after it
      const resumed = await fetch(eventsUrl(web.url, runId), {
        headers: { ...auth(), 'last-event-id': '4' },
      });
      const rest = parseSse(await resumed.text());
      expect(rest.map((e) => `${e.event}:${e.id ?? ''}`)).toEqual([
        'transition:5',
        'transition:6',
        'done:',
      ]);
    } finally {
      await pipeline.stopWorkers();
    }
  });

  it('stops polling when the client goes away', async () => {
    const runId = await sendMessage('nobody is working on this');
    const client = new AbortController();
    const res = await fetch(eventsUrl(web.url, runId), { headers: auth(), signal: client.signal });
    const reader = res.body!.getReader();
    const first = new TextDecoder().decode((await reader.read()).value as Uint8Array);
    expect(first).toContain('"to":"RECEIVED"');
    expect(web.app.openStreams()).toBe(1);
    client.abort();
    await waitFor(() => web.app.openStreams() === 0, { what: 'the stream to stop' });
  });

  it('ends a stream at its cap with event: timeout', async () => {
    const capped = await serve(300);
    try {
      const runId = await sendMessage('this will take a while');
      const res = await fetch(eventsUrl(capped.url, runId), { headers: auth() });
      const events = parseSse(await res.text());
      expect(events.map((e) => e.event)).toEqual(['transition', 'timeout']);
      expect(events[1]!.data).toEqual({ state: 'RECEIVED' });
      expect(capped.app.openStreams()).toBe(0);
    } finally {
      await closeServer(capped.server, capped.app);
    }
  });

  it('does not hold up shutdown: closeServer ends open streams cleanly', async () => {
    const other = await serve();
    const runId = await sendMessage('still waiting at shutdown');
    const res = await fetch(eventsUrl(other.url, runId), { headers: auth() });
    const reader = res.body!.getReader();
    await reader.read();
    expect(other.app.openStreams()).toBe(1);
    // With a grace far beyond the test's timeout, only ending the streams lets this finish.
    await closeServer(other.server, other.app, { graceMs: 10 * 60_000 });
    expect(other.app.openStreams()).toBe(0);
    // the client saw a clean end of stream, not a reset
    for (;;) if ((await reader.read()).done) break;
  });
});
