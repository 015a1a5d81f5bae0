// Regression (issue 12, item 1): `contracts rollback` / `activate` of the runtime contract
// moved the pointer but not the flow mode policy reads, so a bot rolled back to shadow kept
// answering in suggest.
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { telegramUpdate } from '../../ops/fakes/channelPayloads.ts';
import { startTelegramServer } from '../../ops/fakes/telegramServer.ts';
import { applyTestTenant, pipelineTenant, TEST_SECRETS } from '../../ops/fakes/pipelineTenant.ts';
import { runCli } from '../helpers/runCli.ts';
import { startPipeline, type Pipeline } from '../helpers/startPipeline.ts';
import { useTestDatabase } from '../helpers/testDatabase.ts';
import { useRedisPrefix } from '../helpers/useRedisPrefix.ts';
import { waitFor } from '../helpers/waitFor.ts';
import type { MigrationMode } from '../../pipeline/contracts/common.ts';

const db = useTestDatabase();
const prefix = useRedisPrefix();
const PROJECT = 'rollme';

let telegram: Awaited<ReturnType<typeof startTelegramServer>>;
let pipeline: Pipeline;
let owner: pg.Client;

const awooop = (...args: string[]) =>
  runCli(['--actor', 'test:ci', ...args], { DATABASE_URL: db().url });

async function applyMode(mode: MigrationMode) {
  await applyTestTenant(
    { pool: db().pool, logger: pipeline.ctx.logger },
    pipelineTenant({
      projectId: PROJECT,
      telegramApiRoot: telegram.apiRoot,
      lineBaseUrl: telegram.apiRoot,
      mode,
    }),
  );
}

let nextUpdateId = 1;
/** Sends one Telegram message from its own chat; resolves with the finished run. */
async function message(chatId: number) {
  const updateId = nextUpdateId++;
  const res = await fetch(`${pipeline.url}/webhooks/telegram/${PROJECT}/tg`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'x-telegram-bot-api-secret-token': TEST_SECRETS['tg-webhook'],
    },
    body: JSON.stringify(telegramUpdate({ updateId, chatId, text: 'status?' })),
  });
  expect(res.status).toBe(200);
  const run = await waitFor(
    async () => {
      const { rows } = await owner.query<{ state: string; mode: string; live: boolean }>(
        `SELECT r.state, r.mode, r.live FROM runs r
           JOIN conversation_events e ON e.event_id = r.event_id
          WHERE r.project_id = $1 AND e.external_event_id = $2`,
        [PROJECT, String(updateId)],
      );
      const row = rows[0];
      return row && (row.state === 'COMPLETED' || row.state === 'FAILED') ? row : undefined;
    },
    { what: `the run of chat ${chatId}`, timeoutMs: 60_000 },
  );
  // A live answer is sent before the run completes; give a wrongly live one time to show.
  await new Promise((r) => setTimeout(r, 200));
  const sent = telegram.sent.filter((m) => String(m.chat_id) === String(chatId)).length;
  return { ...run, sent };
}

beforeAll(async () => {
  telegram = await startTelegramServer();
  pipeline = await startPipeline({ pool: db().pool, prefix });
  owner = await db().owner();
  await applyMode('shadow'); // runtime v1
  for (const [name, value] of Object.entries(TEST_SECRETS))
    await pipeline.setSecret(PROJECT, name, value);
  await applyMode('suggest'); // runtime v2
});

afterAll(async () => {
  await pipeline?.close();
  await telegram?.close();
});

describe('the flow mode follows the active runtime revision', () => {
  it('answers live in suggest after the apply', async () => {
    expect(await message(7001)).toMatchObject({
      state: 'COMPLETED',
      mode: 'suggest',
      live: true,
      sent: 1,
    });
  });

  it('a rollback to the shadow revision silences the next run, and says so', async () => {
    const result = await awooop('contracts', 'rollback', 'runtime/runtime', '--project', PROJECT);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('active v2 → v1 (rollback)');
    expect(result.stdout).toContain('flow default: mode suggest → shadow');
    expect(await message(7002)).toMatchObject({
      state: 'COMPLETED',
      mode: 'shadow',
      live: false,
      sent: 0,
    });
    const { rows } = await owner.query(
      `SELECT detail->>'mode' AS mode, detail->>'previous_mode' AS previous FROM audit_events
        WHERE project_id = $1 AND action = 'flow.mode.set' ORDER BY audit_id DESC LIMIT 1`,
      [PROJECT],
    );
    expect(rows).toEqual([{ mode: 'shadow', previous: 'suggest' }]);
  });

  it('activating the suggest revision makes runs live again, and activating shadow silences them', async () => {
    const up = await awooop(
      'contracts',
      'activate',
      'runtime/runtime',
      '--project',
      PROJECT,
      '--version',
      '2',
    );
    expect(up.code).toBe(0);
    expect(up.stdout).toContain('flow default: mode shadow → suggest');
    expect(await message(7003)).toMatchObject({ mode: 'suggest', live: true, sent: 1 });

    const down = await awooop(
      'contracts',
      'activate',
      'runtime/runtime',
      '--project',
      PROJECT,
      '--version',
      '1',
    );
    expect(down.code).toBe(0);
    expect(down.stdout).toContain('flow default: mode suggest → shadow');
    expect(await message(7004)).toMatchObject({
      state: 'COMPLETED',
      mode: 'shadow',
      live: false,
      sent: 0,
    });
  });

  it('activating the revision that is already active changes no mode', async () => {
    const again = await awooop(
      'contracts',
      'activate',
      'runtime/runtime',
      '--project',
      PROJECT,
      '--version',
      '1',
    );
    expect(again.code).toBe(0);
    expect(again.stdout).toContain('v1 is already active, nothing changed');
    expect(again.stdout).not.toContain('flow default');
  });

  it('a rollback to a revision without a flow clears that flow, so its runs cannot speak', async () => {
    const input = pipelineTenant({
      projectId: PROJECT,
      telegramApiRoot: telegram.apiRoot,
      lineBaseUrl: telegram.apiRoot,
      mode: 'shadow',
    });
    input.tenant.runtime.flows.push({ name: 'night', mode: 'suggest' });
    const applied = await applyTestTenant({ pool: db().pool, logger: pipeline.ctx.logger }, input);
    expect(applied.flows).toEqual([{ flow: 'night', mode: 'suggest', previousMode: null }]);

    const back = await awooop(
      'contracts',
      'rollback',
      'runtime/runtime',
      '--project',
      PROJECT,
      '--to',
      '1',
    );
    expect(back.code).toBe(0);
    expect(back.stdout).toContain('flow night: mode suggest → none');
    const { rows } = await owner.query(
      'SELECT flow, mode FROM project_migration_state WHERE project_id = $1 ORDER BY flow',
      [PROJECT],
    );
    expect(rows).toEqual([{ flow: 'default', mode: 'shadow' }]);
  });
});
