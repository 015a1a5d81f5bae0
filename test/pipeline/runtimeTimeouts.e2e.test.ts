// Regression (issue 12, item 14): the runtime contract's `timeouts.modelMs` was accepted and
// ignored; a model call waited as long as its target's own `timeoutMs`.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { telegramUpdate } from '../../ops/fakes/channelPayloads.ts';
import { startModelServer } from '../fakes/modelServer.ts';
import { startTelegramServer } from '../../ops/fakes/telegramServer.ts';
import { applyTestTenant, pipelineTenant, TEST_SECRETS } from '../../ops/fakes/pipelineTenant.ts';
import { startPipeline, type Pipeline } from '../helpers/startPipeline.ts';
import { useTestDatabase } from '../helpers/testDatabase.ts';
import { useRedisPrefix } from '../helpers/useRedisPrefix.ts';
import { waitFor } from '../helpers/waitFor.ts';

const db = useTestDatabase();
const prefix = useRedisPrefix();
const PROJECT = 'clocked';

let telegram: Awaited<ReturnType<typeof startTelegramServer>>;
let slow: Awaited<ReturnType<typeof startModelServer>>;
let fallback: Awaited<ReturnType<typeof startModelServer>>;
let pipeline: Pipeline;

beforeAll(async () => {
  telegram = await startTelegramServer();
  slow = await startModelServer();
  fallback = await startModelServer();
  pipeline = await startPipeline({ pool: db().pool, prefix });
  // Both targets allow 5 s (pipelineTenant); the runtime allows a model call 300 ms.
  const input = pipelineTenant({
    projectId: PROJECT,
    telegramApiRoot: telegram.apiRoot,
    lineBaseUrl: telegram.apiRoot,
    modelBaseUrl: slow.url,
    fallbackBaseUrl: fallback.url,
  });
  input.tenant.runtime.timeouts.modelMs = 300;
  await applyTestTenant({ pool: db().pool, logger: pipeline.ctx.logger }, input);
  for (const [name, value] of Object.entries(TEST_SECRETS))
    await pipeline.setSecret(PROJECT, name, value);
});

afterAll(async () => {
  await pipeline?.close();
  await Promise.all([telegram?.close(), slow?.close(), fallback?.close()]);
});

describe('runtime timeouts.modelMs', () => {
  it('cuts a model call shorter than its target allows, so the route falls back', async () => {
    slow.setDelay(2500);
    fallback.respondNext({ content: 'from the fallback' });
    const res = await fetch(`${pipeline.url}/webhooks/telegram/${PROJECT}/tg`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'x-telegram-bot-api-secret-token': TEST_SECRETS['tg-webhook'],
      },
      body: JSON.stringify(telegramUpdate({ updateId: 1, chatId: 8001, text: 'quick?' })),
    });
    expect(res.status).toBe(200);
    const reply = await waitFor(
      () => telegram.sent.find((m) => String(m.chat_id) === '8001') ?? undefined,
      { what: 'the reply', timeoutMs: 60_000 },
    );
    expect(reply.text).toContain('from the fallback');
    expect(slow.requests).toHaveLength(1);
    expect(fallback.requests).toHaveLength(1);
  });
});
