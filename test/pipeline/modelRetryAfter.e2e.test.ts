// Regression (issue 13, item 3): a model provider's `Retry-After` was recorded in the failure's
// detail and ignored; the execute job came back at its own backoff (1-2 s for the first retry)
// however long the provider had asked it to wait.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { telegramUpdate } from '../../ops/fakes/channelPayloads.ts';
import { startModelServer } from '../fakes/modelServer.ts';
import { startTelegramServer } from '../../ops/fakes/telegramServer.ts';
import { setUpTestTenant, TEST_SECRETS } from '../../ops/fakes/pipelineTenant.ts';
import { startPipeline, type Pipeline } from '../helpers/startPipeline.ts';
import { useTestDatabase } from '../helpers/testDatabase.ts';
import { useRedisPrefix } from '../helpers/useRedisPrefix.ts';
import { waitFor } from '../helpers/waitFor.ts';

const db = useTestDatabase();
const prefix = useRedisPrefix();
const PROJECT = 'patient';
const NOTICE = 'Sorry, I could not finish that. The team has been told.';

let telegram: Awaited<ReturnType<typeof startTelegramServer>>;
let model: Awaited<ReturnType<typeof startModelServer>>;
let pipeline: Pipeline;
let nextUpdateId = 1;

beforeAll(async () => {
  telegram = await startTelegramServer();
  model = await startModelServer();
  pipeline = await startPipeline({ pool: db().pool, prefix });
  await setUpTestTenant(pipeline, db().pool, {
    projectId: PROJECT,
    telegramApiRoot: telegram.apiRoot,
    lineBaseUrl: telegram.apiRoot,
    modelBaseUrl: model.url,
  });
});

afterAll(async () => {
  await pipeline?.close();
  await Promise.all([telegram?.close(), model?.close()]);
});

async function post(chatId: number, text: string) {
  const res = await fetch(`${pipeline.url}/webhooks/telegram/${PROJECT}/tg`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'x-telegram-bot-api-secret-token': TEST_SECRETS['tg-webhook'],
    },
    body: JSON.stringify(telegramUpdate({ updateId: nextUpdateId++, chatId, text })),
  });
  expect(res.status).toBe(200);
}

const sentTo = (chatId: number) =>
  telegram.sent.filter((m) => String(m.chat_id) === String(chatId)).map((m) => m.text);

describe("a model provider's Retry-After", () => {
  it('holds the next attempt back at least that long, then the run completes', async () => {
    const chatId = 9101;
    // When each call to the model arrived, by the text it was about.
    const arrivals: number[] = [];
    model.setBehaviour((request) => {
      if (!JSON.stringify(request.body).includes('wait for me')) return undefined;
      arrivals.push(Date.now());
      return arrivals.length === 1
        ? { status: 429, headers: { 'retry-after': '4' } }
        : { content: 'worth the wait' };
    });
    try {
      await post(chatId, 'wait for me');
      await waitFor(() => (sentTo(chatId).length > 0 ? true : undefined), {
        what: 'the reply',
        timeoutMs: 120_000,
      });
    } finally {
      model.setBehaviour(null);
    }
    expect(sentTo(chatId)).toEqual([expect.stringContaining('worth the wait')]);
    expect(arrivals).toHaveLength(2);
    const gap = arrivals[1]! - arrivals[0]!;
    // Not before the 4 s asked for (the stage's own first backoff is 1-2 s); the upper bound
    // only says it was this wait, not a later sweep, on a loaded machine.
    expect(gap).toBeGreaterThanOrEqual(4000);
    expect(gap).toBeLessThan(60_000);
  });

  it('still spends an attempt each time: a provider that never stops asking fails the run', async () => {
    const chatId = 9102;
    let calls = 0;
    model.setBehaviour((request) => {
      if (!JSON.stringify(request.body).includes('never ready')) return undefined;
      calls += 1;
      return { status: 429, headers: { 'retry-after': '1' } };
    });
    try {
      await post(chatId, 'never ready');
      await waitFor(() => (sentTo(chatId).length > 0 ? true : undefined), {
        what: 'the failure notice',
        timeoutMs: 170_000,
      });
    } finally {
      model.setBehaviour(null);
    }
    expect(sentTo(chatId)).toEqual([NOTICE]);
    // The execute stage's five attempts, no more: the waits did not reset the count.
    expect(calls).toBe(5);
    const owner = await db().owner();
    const { rows } = await owner.query<{ failure_code: string }>(
      `SELECT failure_code FROM runs WHERE project_id = $1 AND state = 'FAILED'`,
      [PROJECT],
    );
    expect(rows).toEqual([{ failure_code: 'MODEL_UNAVAILABLE' }]);
  });

  it('fails the run at once when the provider asks for longer than the run has left', async () => {
    const chatId = 9103;
    let calls = 0;
    model.setBehaviour((request) => {
      if (!JSON.stringify(request.body).includes('come back in an hour')) return undefined;
      calls += 1;
      return { status: 429, headers: { 'retry-after': '3600' } };
    });
    try {
      await post(chatId, 'come back in an hour');
      await waitFor(() => (sentTo(chatId).length > 0 ? true : undefined), {
        what: 'the failure notice',
        timeoutMs: 60_000,
      });
    } finally {
      model.setBehaviour(null);
    }
    expect(sentTo(chatId)).toEqual([NOTICE]);
    // One call: the hour asked for is past the run's deadline, so no attempt waits for it.
    expect(calls).toBe(1);
    const owner = await db().owner();
    const { rows } = await owner.query<{ failure_code: string }>(
      `SELECT r.failure_code FROM runs r JOIN conversation_events e ON e.event_id = r.event_id
        WHERE e.body->'message'->>'text' = 'come back in an hour'`,
    );
    expect(rows).toEqual([{ failure_code: 'MODEL_UNAVAILABLE' }]);
  });
});
