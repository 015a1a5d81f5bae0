import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lineSignature, lineWebhook, telegramUpdate } from '../../ops/fakes/channelPayloads.ts';
import { setUpTestTenant, TEST_SECRETS } from '../../ops/fakes/pipelineTenant.ts';
import { startPipeline, type Pipeline } from '../helpers/startPipeline.ts';
import { tableCounts } from '../helpers/tableCounts.ts';
import { useTestDatabase } from '../helpers/testDatabase.ts';
import { useRedisPrefix } from '../helpers/useRedisPrefix.ts';

// Regression: a NUL or an unpaired surrogate in a message was a 500, since Postgres refuses
// both in jsonb (and NUL in text); Telegram and LINE redeliver on 5xx, so the message was a
// poison pill. Channels now store U+FFFD in their place; the API refuses them with a 400.

const db = useTestDatabase();
const prefix = useRedisPrefix();

let pipeline: Pipeline;
let owner: pg.Client;

const PROJECT = 'acme';
/** What a channel's text becomes: each NUL and each unpaired surrogate is one U+FFFD. */
const BAD = 'a\u0000b\ud800c\udc00d';
const STORED = 'a\ufffdb\ufffdc\ufffdd';

beforeAll(async () => {
  // No workers, so what ingress stored stays as it stored it.
  pipeline = await startPipeline({ pool: db().pool, prefix, workers: false });
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

/** The stored event body of a run. */
async function storedEvent(runId: string) {
  const { rows } = await owner.query<{ body: Record<string, unknown>; external_event_id: string }>(
    `SELECT e.body, e.external_event_id FROM conversation_events e JOIN runs r USING (event_id)
      WHERE r.run_id = $1`,
    [runId],
  );
  return rows[0]!;
}

const postTelegram = (body: string) =>
  fetch(`${pipeline.url}/webhooks/telegram/${PROJECT}/tg`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'x-telegram-bot-api-secret-token': TEST_SECRETS['tg-webhook'],
    },
    body,
  });

const postLine = (body: string) =>
  fetch(`${pipeline.url}/webhooks/line/${PROJECT}/ln`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'x-line-signature': lineSignature(body, TEST_SECRETS['line-secret']),
    },
    body,
  });

describe('a channel message holding a NUL or an unpaired surrogate', () => {
  it('is answered 200 by the Telegram webhook and stored with U+FFFD in their place, once', async () => {
    const update = telegramUpdate({ updateId: 7001, chatId: -100123, text: BAD });
    const message = update.message as { from: Record<string, unknown> };
    // The display name is cut at 200 code units: here that cut splits an emoji's pair.
    message.from.first_name = `N\u0000${'x'.repeat(197)}😀`;
    const body = JSON.stringify(update);
    // JSON.stringify escapes both, so the wire carries "\u0000" and "\ud800" as Telegram would.
    expect(body).toContain('\\u0000');
    expect(body).toContain('\\ud800');

    const res = await postTelegram(body);
    expect(res.status).toBe(200);
    const { runs } = (await res.json()) as { runs: string[] };
    expect(runs).toHaveLength(1);
    const stored = await storedEvent(runs[0]!);
    expect(stored.body).toMatchObject({
      message: { text: STORED },
      sender: { displayName: `N\ufffd${'x'.repeat(197)}\ufffd` },
    });

    // Telegram's redelivery of the same update is the same event, not a second run.
    const counts = await tableCounts(owner);
    const again = await postTelegram(body);
    expect(again.status).toBe(200);
    expect(await again.json()).toEqual({ ok: true, runs, duplicate: true });
    expect(await tableCounts(owner)).toEqual(counts);
  });

  it('is answered 200 by the LINE webhook and stored with U+FFFD in every string, once', async () => {
    const { payload } = lineWebhook({
      events: [
        {
          text: BAD,
          userId: 'U\u0000user',
          webhookEventId: '01HEVENT\ud800X',
          replyToken: 'tok\u0000en',
          quotedMessageId: 'q\udc00',
        },
      ],
      channelSecret: TEST_SECRETS['line-secret'],
    });
    const body = JSON.stringify(payload);
    const res = await postLine(body);
    expect(res.status).toBe(200);
    const { runs } = (await res.json()) as { runs: string[] };
    expect(runs).toHaveLength(1);
    const stored = await storedEvent(runs[0]!);
    expect(stored.external_event_id).toBe('01HEVENT\ufffdX');
    expect(stored.body).toMatchObject({
      externalEventId: '01HEVENT\ufffdX',
      sender: { id: 'U\ufffduser' },
      conversation: { id: 'U\ufffduser' },
      message: { text: STORED, replyToExternalId: 'q\ufffd' },
      replyToken: { value: 'tok\ufffden' },
    });

    const counts = await tableCounts(owner);
    const again = await postLine(body);
    expect(again.status).toBe(200);
    expect(await again.json()).toEqual({ ok: true, runs });
    expect(await tableCounts(owner)).toEqual(counts);
  });
});

describe('an API message holding a NUL or an unpaired surrogate', () => {
  for (const [field, value] of [
    ['text', 'hello\u0000'],
    ['text', 'hello \ud83d'],
    ['conversation_id', 'c\u0000'],
    ['sender_id', '\udfffs'],
  ] as const) {
    it(`is refused with 400 naming ${field} (${JSON.stringify(value)}), and nothing is written`, async () => {
      const key = await pipeline.createKey(PROJECT);
      const counts = await tableCounts(owner);
      const jobs = await pipeline.queues.queues.resolve.getJobCounts();
      const res = await fetch(`${pipeline.url}/v1/projects/${PROJECT}/messages`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ text: 'hi', [field]: value }),
      });
      expect(res.status).toBe(400);
      expect(await res.json()).toEqual({
        error: {
          code: 'BODY_INVALID',
          message: `${field}: must not hold a NUL or an unpaired surrogate`,
        },
      });
      expect(await tableCounts(owner)).toEqual(counts);
      expect(await pipeline.queues.queues.resolve.getJobCounts()).toEqual(jobs);
    });
  }
});
