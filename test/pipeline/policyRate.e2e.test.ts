// Regression (issue 15, items 2 and 4): the policy contract's `rate` gate failed runs that
// ingress had already accepted (RATE_LIMITED), so an accepted message could end unanswered
// although every accepted request is to be completed. Over the gate a run now waits in the
// queue for the next minute's window and then completes; the stages' clock is the test's, so
// "the next minute" is a step of it rather than a minute of waiting.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { telegramUpdate } from '../../ops/fakes/channelPayloads.ts';
import { applyTestTenant, pipelineTenant, TEST_SECRETS } from '../../ops/fakes/pipelineTenant.ts';
import { startTelegramServer } from '../../ops/fakes/telegramServer.ts';
import { TenantFile } from '../../pipeline/contracts/tenantFile.ts';
import { startPipeline, type Pipeline } from '../helpers/startPipeline.ts';
import { useTestDatabase } from '../helpers/testDatabase.ts';
import { useRedisPrefix } from '../helpers/useRedisPrefix.ts';
import { waitFor } from '../helpers/waitFor.ts';

const db = useTestDatabase();
const prefix = useRedisPrefix();
const PROJECT = 'rated';
const CHAT = 61_000;

let telegram: Awaited<ReturnType<typeof startTelegramServer>>;
let pipeline: Pipeline;
// The last millisecond of the minute before this one: behind the real clock, so no deadline
// is reached early, and a minute's window away from the next.
let clock = Math.floor(Date.now() / 60_000) * 60_000 - 1;

beforeAll(async () => {
  telegram = await startTelegramServer();
  pipeline = await startPipeline({ pool: db().pool, prefix, now: () => clock });
  const base = pipelineTenant({
    projectId: PROJECT,
    telegramApiRoot: telegram.apiRoot,
    lineBaseUrl: telegram.apiRoot,
    mode: 'suggest',
  });
  const tenant = TenantFile.parse({
    ...base.tenant,
    policies: {
      default: {
        ...base.tenant.policies.default,
        rate: { perPeerPerMinute: 2, perProjectPerMinute: 10_000 },
      },
    },
  });
  await applyTestTenant(
    { pool: db().pool, logger: pipeline.ctx.logger },
    { tenant, artifacts: base.artifacts },
  );
  for (const [name, value] of Object.entries(TEST_SECRETS))
    await pipeline.setSecret(PROJECT, name, value);
});

afterAll(async () => {
  await pipeline?.close();
  await telegram?.close();
});

async function runStates() {
  const owner = await db().owner();
  const { rows } = await owner.query<{ state: string; failure_code: string | null }>(
    `SELECT state, failure_code FROM runs WHERE project_id = $1 ORDER BY created_at`,
    [PROJECT],
  );
  return rows;
}

describe("the policy's rate gate", () => {
  it('holds a run over it in the queue until the next window, then completes it', async () => {
    for (let i = 1; i <= 4; i++) {
      const res = await fetch(`${pipeline.url}/webhooks/telegram/${PROJECT}/tg`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'x-telegram-bot-api-secret-token': TEST_SECRETS['tg-webhook'],
        },
        body: JSON.stringify(telegramUpdate({ updateId: i, chatId: CHAT, text: `message ${i}` })),
      });
      expect(res.status).toBe(200);
    }
    // Two fit this minute's window; the other two wait, unfailed, with nothing sent for them.
    await waitFor(
      async () => (await runStates()).filter((r) => r.state === 'COMPLETED').length === 2,
      { what: 'two runs completed', timeoutMs: 60_000 },
    );
    // Long enough for the waiting runs to ask again (each waits at most the window's last
    // millisecond and a second's spread) and be held again.
    await new Promise((r) => setTimeout(r, 2500));
    const held = await runStates();
    expect(held.filter((r) => r.state === 'COMPLETED')).toHaveLength(2);
    expect(held.filter((r) => r.state === 'RESOLVED')).toHaveLength(2);
    expect(held.filter((r) => r.failure_code !== null)).toEqual([]);
    expect(telegram.sent.filter((m) => String(m.chat_id) === String(CHAT))).toHaveLength(2);

    clock += 60_000;
    await waitFor(
      async () => (await runStates()).filter((r) => r.state === 'COMPLETED').length === 4,
      { what: 'all four runs completed', timeoutMs: 60_000 },
    );
    expect((await runStates()).every((r) => r.failure_code === null)).toBe(true);
    const texts = telegram.sent
      .filter((m) => String(m.chat_id) === String(CHAT))
      .map((m) => m.text);
    expect(texts).toHaveLength(4);
    expect(new Set(texts).size).toBe(4);
  });
});
