import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REDACTED } from '../../pipeline/sanitize/redactSecrets.ts';
import { telegramUpdate } from '../../ops/fakes/channelPayloads.ts';
import { startLineServer } from '../fakes/lineServer.ts';
import { startModelServer } from '../fakes/modelServer.ts';
import { startTelegramServer } from '../../ops/fakes/telegramServer.ts';
import { setUpTestTenant, TEST_SECRETS } from '../../ops/fakes/pipelineTenant.ts';
import { startPipeline, type Pipeline } from '../helpers/startPipeline.ts';
import { useTestDatabase } from '../helpers/testDatabase.ts';
import { useRedisPrefix } from '../helpers/useRedisPrefix.ts';
import { waitFor } from '../helpers/waitFor.ts';

const db = useTestDatabase();
const prefix = useRedisPrefix();
const PROJECT = 'acme';
/** A credential of the project's that no channel or model uses: known only as a secret. */
const DB_PASSWORD = 'correct-horse-battery-staple-42';

let telegram: Awaited<ReturnType<typeof startTelegramServer>>;
let line: Awaited<ReturnType<typeof startLineServer>>;
let model: Awaited<ReturnType<typeof startModelServer>>;
let pipeline: Pipeline;
let owner: pg.Client;
let apiKey: string;

beforeAll(async () => {
  telegram = await startTelegramServer();
  line = await startLineServer();
  model = await startModelServer();
  pipeline = await startPipeline({ pool: db().pool, prefix });
  owner = await db().owner();
  await setUpTestTenant(pipeline, db().pool, {
    projectId: PROJECT,
    telegramApiRoot: telegram.apiRoot,
    lineBaseUrl: line.baseUrl,
    modelBaseUrl: model.url,
  });
  await pipeline.setSecret(PROJECT, 'db-password', DB_PASSWORD);
  apiKey = await pipeline.createKey(PROJECT);
});

afterAll(async () => {
  await pipeline?.close();
  await Promise.all([telegram?.close(), line?.close(), model?.close()]);
});

/** Tables (of this file's database) whose rows hold `value` anywhere, as text. */
async function tablesHolding(value: string): Promise<string[]> {
  const { rows } = await owner.query<{ table_name: string }>(
    "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
  );
  const holding: string[] = [];
  for (const { table_name } of rows) {
    const found = await owner.query(
      `SELECT 1 FROM ${table_name} t WHERE strpos(t::text, $1) > 0 LIMIT 1`,
      [value],
    );
    if (found.rowCount) holding.push(table_name);
  }
  return holding;
}

async function finished(runId: string) {
  return waitFor(
    async () => {
      const { rows } = await owner.query<{ state: string }>(
        'SELECT state FROM runs WHERE run_id = $1',
        [runId],
      );
      const state = rows[0]?.state;
      return state === 'COMPLETED' || state === 'FAILED' ? state : false;
    },
    { what: `run ${runId} to finish` },
  );
}

async function eventText(runId: string): Promise<string> {
  const { rows } = await owner.query<{ text: string }>(
    `SELECT e.body #>> '{message,text}' AS text
       FROM conversation_events e JOIN runs r USING (event_id) WHERE r.run_id = $1`,
    [runId],
  );
  return rows[0]!.text;
}

const sentToModel = () => model.requests.map((r) => r.rawBody).join('\n');

describe('a project credential typed by a user', () => {
  // Regression (issue 12, item 9): sanitize redacted it from the answer, but the inbound text
  // was stored as sent in conversation_events and handed to the model as is.
  it('is redacted from a Telegram message before it is stored or sent to the model', async () => {
    const text = `my db password is ${DB_PASSWORD} and the LINE token ${TEST_SECRETS['line-token']}, help`;
    const res = await fetch(`${pipeline.url}/webhooks/telegram/${PROJECT}/tg`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'x-telegram-bot-api-secret-token': TEST_SECRETS['tg-webhook'],
      },
      body: JSON.stringify(telegramUpdate({ updateId: 7001, chatId: 6001, text })),
    });
    expect(res.status).toBe(200);
    const { runs } = (await res.json()) as { runs: string[] };
    expect(await finished(runs[0]!)).toBe('COMPLETED');
    expect(await eventText(runs[0]!)).toBe(
      `my db password is ${REDACTED} and the LINE token ${REDACTED}, help`,
    );
    expect(sentToModel()).toContain(`my db password is ${REDACTED}`);
    for (const secret of [DB_PASSWORD, TEST_SECRETS['line-token']]) {
      expect(sentToModel()).not.toContain(secret);
      expect(await tablesHolding(secret)).toEqual([]);
    }
  });

  it('is redacted from an API message, and a retry with the same Idempotency-Key finds the same run', async () => {
    const send = () =>
      fetch(`${pipeline.url}/v1/projects/${PROJECT}/messages`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${apiKey}`,
          'content-type': 'application/json',
          'idempotency-key': 'redact-1',
        },
        body: JSON.stringify({ text: `connect with password=${DB_PASSWORD}` }),
      });
    const first = await send();
    expect(first.status).toBe(202);
    const { run_id: runId } = (await first.json()) as { run_id: string };
    expect(await finished(runId)).toBe('COMPLETED');
    expect(await eventText(runId)).toBe(`connect with password=${REDACTED}`);
    expect(sentToModel()).not.toContain(DB_PASSWORD);
    expect(await tablesHolding(DB_PASSWORD)).toEqual([]);

    const again = await send();
    expect(again.status).toBe(202);
    expect(await again.json()).toEqual({ run_id: runId, duplicate: true });
  });

  it('is redacted from the history a later message of the conversation sends to the model', async () => {
    const post = (updateId: number, text: string) =>
      fetch(`${pipeline.url}/webhooks/telegram/${PROJECT}/tg`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'x-telegram-bot-api-secret-token': TEST_SECRETS['tg-webhook'],
        },
        body: JSON.stringify(telegramUpdate({ updateId, chatId: 6002, text })),
      }).then(async (r) => ((await r.json()) as { runs: string[] }).runs[0]!);
    expect(await finished(await post(7101, `the key is ${DB_PASSWORD}`))).toBe('COMPLETED');
    const before = model.requests.length;
    expect(await finished(await post(7102, 'and what did I say before?'))).toBe('COMPLETED');
    const later = model.requests.slice(before).map((r) => r.rawBody);
    expect(later.join('\n')).toContain(`the key is ${REDACTED}`);
    expect(later.join('\n')).not.toContain(DB_PASSWORD);
  });
});
