// Issue 15, item 6: provider health is a platform resource the execute stage's model route
// obeys. A primary that keeps failing opens its breaker, and later runs go straight to the
// fallback without the primary being called.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findProviderEndpoint } from '../../db/providerEndpoints.ts';
import { telegramUpdate } from '../../ops/fakes/channelPayloads.ts';
import { setUpTestTenant, TEST_SECRETS } from '../../ops/fakes/pipelineTenant.ts';
import { startTelegramServer } from '../../ops/fakes/telegramServer.ts';
import { startModelServer } from '../fakes/modelServer.ts';
import { startPipeline, type Pipeline } from '../helpers/startPipeline.ts';
import { useTestDatabase } from '../helpers/testDatabase.ts';
import { useRedisPrefix } from '../helpers/useRedisPrefix.ts';
import { waitFor } from '../helpers/waitFor.ts';

const db = useTestDatabase();
const prefix = useRedisPrefix();
const PROJECT = 'tripped';

let telegram: Awaited<ReturnType<typeof startTelegramServer>>;
let primary: Awaited<ReturnType<typeof startModelServer>>;
let fallback: Awaited<ReturnType<typeof startModelServer>>;
let pipeline: Pipeline;

beforeAll(async () => {
  telegram = await startTelegramServer();
  primary = await startModelServer();
  fallback = await startModelServer();
  pipeline = await startPipeline({
    pool: db().pool,
    prefix,
    providerHealth: { failures: 2, cooldownMs: 600_000, refreshMs: 0 },
  });
  await setUpTestTenant(pipeline, db().pool, {
    projectId: PROJECT,
    telegramApiRoot: telegram.apiRoot,
    lineBaseUrl: telegram.apiRoot,
    modelBaseUrl: primary.url,
    fallbackBaseUrl: fallback.url,
  });
});

afterAll(async () => {
  await pipeline?.close();
  await Promise.all([telegram?.close(), primary?.close(), fallback?.close()]);
});

async function ask(updateId: number, chatId: number) {
  const res = await fetch(`${pipeline.url}/webhooks/telegram/${PROJECT}/tg`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'x-telegram-bot-api-secret-token': TEST_SECRETS['tg-webhook'],
    },
    body: JSON.stringify(telegramUpdate({ updateId, chatId, text: `question ${updateId}` })),
  });
  expect(res.status).toBe(200);
  return waitFor(() => telegram.sent.find((m) => String(m.chat_id) === String(chatId)), {
    what: `the reply to chat ${chatId}`,
    timeoutMs: 60_000,
  });
}

describe('provider health in the pipeline', () => {
  it('opens the failing primary and sends later runs straight to the fallback', async () => {
    primary.failNext(2, { status: 503 });
    for (const [updateId, chatId] of [
      [1, 9001],
      [2, 9002],
    ] as const)
      expect((await ask(updateId, chatId)).text).toContain(`question ${updateId}`);
    expect(primary.requests).toHaveLength(2);
    expect(
      await findProviderEndpoint(db().pool, {
        provider: 'openai_compatible',
        baseUrl: primary.url,
      }),
    ).toMatchObject({ state: 'open', failures: 2 });

    expect((await ask(3, 9003)).text).toContain('question 3');
    expect(primary.requests).toHaveLength(2);
    expect(fallback.requests).toHaveLength(3);
  });
});
