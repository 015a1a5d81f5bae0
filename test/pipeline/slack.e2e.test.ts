import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChannelContract } from '../../pipeline/contracts/channelContract.ts';
import type { MigrationMode } from '../../pipeline/contracts/common.ts';
import { applyTestTenant, pipelineTenant, TEST_SECRETS } from '../../ops/fakes/pipelineTenant.ts';
import {
  slackEventCallback,
  slackHeaders,
  slackUrlVerification,
} from '../../ops/fakes/slackPayloads.ts';
import { startModelServer } from '../fakes/modelServer.ts';
import { startSlackServer, type SlackServer } from '../../ops/fakes/slackServer.ts';
import { startPipeline, type Pipeline } from '../helpers/startPipeline.ts';
import { tableCounts } from '../helpers/tableCounts.ts';
import { useTestDatabase } from '../helpers/testDatabase.ts';
import { useRedisPrefix } from '../helpers/useRedisPrefix.ts';
import { waitFor } from '../helpers/waitFor.ts';

// Slack end to end: signed Events API requests into ingress, the five stages, and answers
// posted through the real @slack/web-api client into a fake Slack Web API.
const db = useTestDatabase();
const prefix = useRedisPrefix();
const PROJECT = 'slackco';
const SHADOW = 'slackshadow';
/** A project on a real (fake) model, whose Slack account sends a status note after 300 ms. */
const SLOW = 'slackslow';
const SIGNING_SECRET = 'slack-signing-secret-0123456789abcdef';
const BOT_TOKEN = 'xoxb-1234567890-0987654321-AbCdEfGhIjKlMnOpQrStUvWx';

let slack: SlackServer;
let model: Awaited<ReturnType<typeof startModelServer>>;
let pipeline: Pipeline;
let owner: pg.Client;
let nextEvent = 1;

async function setUpProject(
  projectId: string,
  mode: MigrationMode,
  { modelBaseUrl, statusAfterMs }: { modelBaseUrl?: string; statusAfterMs?: number } = {},
) {
  // The Telegram and LINE accounts of the test tenant point nowhere: only Slack is spoken to.
  const input = pipelineTenant({
    projectId,
    telegramApiRoot: 'http://127.0.0.1:9/',
    lineBaseUrl: 'http://127.0.0.1:9',
    mode,
    ...(modelBaseUrl ? { modelBaseUrl } : {}),
  });
  input.tenant.channels.sl = ChannelContract.parse({
    type: 'slack',
    signingSecret: 'secret:slack-signing',
    botToken: 'secret:slack-bot',
    apiBaseUrl: slack.apiBaseUrl,
    ...(statusAfterMs !== undefined
      ? { progress: { statusAfterMs, statusText: 'Working on it' } }
      : {}),
  });
  await applyTestTenant({ pool: db().pool, logger: pipeline.ctx.logger }, input);
  await pipeline.setSecret(projectId, 'slack-signing', SIGNING_SECRET);
  await pipeline.setSecret(projectId, 'slack-bot', BOT_TOKEN);
}

beforeAll(async () => {
  slack = await startSlackServer({ token: BOT_TOKEN });
  model = await startModelServer();
  pipeline = await startPipeline({ pool: db().pool, prefix });
  owner = await db().owner();
  await setUpProject(PROJECT, 'read_only');
  await setUpProject(SHADOW, 'shadow');
  await setUpProject(SLOW, 'read_only', { modelBaseUrl: model.url, statusAfterMs: 300 });
  for (const [name, value] of Object.entries(TEST_SECRETS))
    await pipeline.setSecret(SLOW, name, value);
});

afterAll(async () => {
  await pipeline?.close();
  await slack?.close();
  await model?.close();
});

function postSlack(
  body: string,
  { projectId = PROJECT, headers = slackHeaders(body, SIGNING_SECRET) } = {},
) {
  return fetch(`${pipeline.url}/webhooks/slack/${projectId}/sl`, {
    method: 'POST',
    headers,
    body,
  });
}

const eventId = () => `Ev0E2E${String(nextEvent++).padStart(4, '0')}`;

type RunRow = { run_id: string; state: string; failure_code: string | null };
async function runsOf(externalEventId: string): Promise<RunRow[]> {
  const { rows } = await owner.query<RunRow>(
    `SELECT r.run_id, r.state, r.failure_code FROM runs r
       JOIN conversation_events e ON e.event_id = r.event_id
      WHERE e.external_event_id = $1`,
    [externalEventId],
  );
  return rows;
}
const finished = (externalEventId: string) =>
  waitFor(
    async () => {
      const [run] = await runsOf(externalEventId);
      return run && (run.state === 'COMPLETED' || run.state === 'FAILED') ? run : undefined;
    },
    { what: `the run of ${externalEventId} to finish`, timeoutMs: 60_000 },
  );
async function ledger(runId: string) {
  const { rows } = await owner.query<{ kind: string; status: string; format: string }>(
    'SELECT kind, status, format FROM outbound_messages WHERE run_id = $1 ORDER BY kind, chunk_index',
    [runId],
  );
  return rows;
}
const postsIn = (threadTs: string) => slack.posts.filter((p) => p.threadTs === threadTs);

/** Runs `act` and checks that no table row and no queued job came of it. */
async function expectNothingWritten<T>(act: () => Promise<T>): Promise<T> {
  const counts = await tableCounts(owner);
  const jobs = await pipeline.queues.queues.resolve.getJobCounts();
  const result = await act();
  expect(await tableCounts(owner)).toEqual(counts);
  expect(await pipeline.queues.queues.resolve.getJobCounts()).toEqual(jobs);
  return result;
}

describe('Slack Events API in', () => {
  it('answers url_verification with its challenge and writes nothing', async () => {
    const res = await expectNothingWritten(() =>
      postSlack(JSON.stringify(slackUrlVerification('chal-123'))),
    );
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ challenge: 'chal-123' });
  });

  it('refuses a bad signature with 401 and writes nothing', async () => {
    const body = JSON.stringify(slackEventCallback({ eventId: eventId(), kind: 'im', text: 'hi' }));
    for (const headers of [
      slackHeaders(body, 'not-the-signing-secret'),
      slackHeaders(`${body} `, SIGNING_SECRET),
      { 'content-type': 'application/json' },
    ]) {
      const res = await expectNothingWritten(() => postSlack(body, { headers }));
      expect(res.status).toBe(401);
      expect(await res.json()).toMatchObject({ error: { code: 'SIGNATURE_INVALID' } });
    }
  });

  it('refuses a correctly signed request older than five minutes with 401 and writes nothing', async () => {
    const body = JSON.stringify(slackEventCallback({ eventId: eventId(), kind: 'im', text: 'hi' }));
    const stale = Math.floor(Date.now() / 1000) - 6 * 60;
    const res = await expectNothingWritten(() =>
      postSlack(body, { headers: slackHeaders(body, SIGNING_SECRET, stale) }),
    );
    expect(res.status).toBe(401);
  });

  it('answers 200 and makes no run for a bot post or a message edit', async () => {
    for (const extra of [{ bot_id: 'B0FAKEBOT' }, { subtype: 'message_changed' }]) {
      const body = JSON.stringify(
        slackEventCallback({ eventId: eventId(), kind: 'im', text: 'hi', extra }),
      );
      const res = await expectNothingWritten(() => postSlack(body));
      expect(res.status).toBe(200);
      expect(await res.json()).toMatchObject({ ok: true, runs: [] });
    }
  });
});

describe('Slack answers', () => {
  it('answers an app_mention once, in a new thread under the message, mrkdwn escaped', async () => {
    const id = eventId();
    const ts = '1515449522.000016';
    const res = await postSlack(
      JSON.stringify(
        slackEventCallback({
          eventId: id,
          kind: 'app_mention',
          text: 'is <b> & <!channel> ok?',
          ts,
        }),
      ),
    );
    expect(res.status).toBe(200);
    const run = await finished(id);
    expect(run.state).toBe('COMPLETED');
    const posts = postsIn(ts);
    expect(posts).toHaveLength(1);
    expect(posts[0]).toMatchObject({
      channel: 'C0LAN2Q65',
      text: 'echo: is &lt;b&gt; &amp; &lt;!channel&gt; ok?',
      token: BOT_TOKEN,
    });
    expect(await ledger(run.run_id)).toEqual([{ kind: 'reply', status: 'sent', format: 'mrkdwn' }]);
  });

  it('answers a direct message in its thread, and a reply in a thread into that thread', async () => {
    const first = eventId();
    const ts = '1355517523.000005';
    await postSlack(
      JSON.stringify(slackEventCallback({ eventId: first, kind: 'im', text: 'Hello hello', ts })),
    );
    await finished(first);
    const second = eventId();
    await postSlack(
      JSON.stringify(
        slackEventCallback({
          eventId: second,
          kind: 'im',
          text: 'and again',
          ts: '1355517600.000001',
          threadTs: ts,
        }),
      ),
    );
    await finished(second);
    expect(postsIn(ts).map((p) => [p.channel, p.text])).toEqual([
      ['D024BE91L', 'echo: Hello hello'],
      ['D024BE91L', 'echo: and again'],
    ]);
  });

  it('makes one run and one answer of five concurrent copies of an event, retries among them', async () => {
    const id = eventId();
    const ts = '1600000000.000555';
    const body = JSON.stringify(slackEventCallback({ eventId: id, kind: 'im', text: 'five', ts }));
    const answers = await Promise.all(
      [0, 1, 2, 3, 4].map((retry) =>
        postSlack(body, {
          headers: {
            ...slackHeaders(body, SIGNING_SECRET),
            ...(retry === 0
              ? {}
              : { 'x-slack-retry-num': String(retry), 'x-slack-retry-reason': 'http_timeout' }),
          },
        }),
      ),
    );
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200, 200, 200]);
    const bodies = (await Promise.all(answers.map((a) => a.json()))) as { runs: string[] }[];
    expect(new Set(bodies.flatMap((b) => b.runs)).size).toBe(1);
    await finished(id);
    expect(await runsOf(id)).toHaveLength(1);
    // Let any stray second delivery show before counting.
    await new Promise((r) => setTimeout(r, 500));
    expect(postsIn(ts)).toHaveLength(1);
  });

  it("waits out a 429's Retry-After and still sends the answer once", async () => {
    const id = eventId();
    const ts = '1600000000.000429';
    const before = slack.requests.length;
    slack.failNext(1, { kind: 'rate_limited', retryAfter: 1 });
    await postSlack(
      JSON.stringify(slackEventCallback({ eventId: id, kind: 'im', text: 'limited', ts })),
    );
    const run = await finished(id);
    expect(run.state).toBe('COMPLETED');
    expect(postsIn(ts)).toHaveLength(1);
    const calls = slack.requests.slice(before).filter((r) => r.path === '/api/chat.postMessage');
    expect(calls.map((c) => c.status)).toEqual([429, 200]);
    expect(await ledger(run.run_id)).toEqual([{ kind: 'reply', status: 'sent', format: 'mrkdwn' }]);
  });

  it('never repeats a post Slack may have made (fatal_error): the chunk is uncertain', async () => {
    const id = eventId();
    const ts = '1600000000.000500';
    slack.failNext(1, { kind: 'error', error: 'fatal_error' });
    const before = slack.requests.length;
    await postSlack(
      JSON.stringify(slackEventCallback({ eventId: id, kind: 'im', text: 'maybe', ts })),
    );
    const run = await finished(id);
    await new Promise((r) => setTimeout(r, 500));
    const calls = slack.requests.slice(before).filter((r) => r.path === '/api/chat.postMessage');
    expect(calls).toHaveLength(1);
    expect(await ledger(run.run_id)).toEqual([
      { kind: 'reply', status: 'uncertain', format: 'mrkdwn' },
    ]);
  });

  it('sends nothing in shadow mode: the answer is recorded suppressed', async () => {
    const id = eventId();
    const ts = '1600000000.000777';
    const body = JSON.stringify(
      slackEventCallback({ eventId: id, kind: 'app_mention', text: 'quiet', ts }),
    );
    const res = await postSlack(body, { projectId: SHADOW });
    expect(res.status).toBe(200);
    const run = await finished(id);
    expect(run.state).toBe('COMPLETED');
    expect(postsIn(ts)).toHaveLength(0);
    expect(await ledger(run.run_id)).toEqual([
      { kind: 'reply', status: 'suppressed', format: 'mrkdwn' },
    ]);
  });
});

describe('progress on Slack', () => {
  // Regression: the account's progress block was accepted and ignored: status notes went only
  // to plugins that can show typing, which Slack's Events API cannot.
  it('posts one status note in the thread while a slow run executes, then the answer', async () => {
    const id = eventId();
    const ts = '1515449600.000077';
    model.setDelay(1500);
    try {
      const body = JSON.stringify(
        slackEventCallback({ eventId: id, kind: 'app_mention', text: 'slow one', ts }),
      );
      const res = await postSlack(body, {
        projectId: SLOW,
        headers: slackHeaders(body, SIGNING_SECRET),
      });
      expect(res.status).toBe(200);
      expect((await finished(id)).state).toBe('COMPLETED');
    } finally {
      model.setDelay(0);
    }
    expect(postsIn(ts).map((p) => p.text)).toEqual(['Working on it', 'model: slow one']);
  });
});
