import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../ops/createLogger.ts';
import { Stage } from '../../pipeline/contracts/runJob.ts';
import { telegramUpdate } from '../../ops/fakes/channelPayloads.ts';
import { startLineServer } from '../fakes/lineServer.ts';
import { startModelServer } from '../fakes/modelServer.ts';
import { startTelegramServer } from '../../ops/fakes/telegramServer.ts';
import { applyTestTenant, pipelineTenant, TEST_SECRETS } from '../../ops/fakes/pipelineTenant.ts';
import { startPipeline, type Pipeline } from '../helpers/startPipeline.ts';
import { useTestDatabase } from '../helpers/testDatabase.ts';
import { useRedisPrefix } from '../helpers/useRedisPrefix.ts';
import { waitFor } from '../helpers/waitFor.ts';

const db = useTestDatabase();
const prefix = useRedisPrefix();
const PROJECT = 'acme';
const SCHEMA = 'strict';

type Line = Record<string, unknown> & { level: number; msg: string };
const raw: string[] = [];
const lines = () => raw.map((l) => JSON.parse(l) as Line);
const logger = createLogger({
  level: 'info',
  name: 'test',
  destination: new Writable({
    write(chunk: Buffer, _encoding, done) {
      raw.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      done();
    },
  }),
});

let telegram: Awaited<ReturnType<typeof startTelegramServer>>;
let line: Awaited<ReturnType<typeof startLineServer>>;
let model: Awaited<ReturnType<typeof startModelServer>>;
let pipeline: Pipeline;
let apiKey: string;

/** What users wrote in this file's messages: no log line may quote any of it. */
const TEXTS = {
  telegram: 'please summarise the quarterly figures for zebra-7731',
  api: 'what is the capital of ocelot-5512',
  schema: 'give me a report on lynx-0042',
  refused: 'a body that breaks the schema heron-9090',
};

beforeAll(async () => {
  telegram = await startTelegramServer();
  line = await startLineServer();
  model = await startModelServer();
  pipeline = await startPipeline({ pool: db().pool, prefix, logger });
  for (const [projectId, extra] of [
    [PROJECT, {}],
    [SCHEMA, { outputSchema: { type: 'object', required: ['answer'] } }],
  ] as const) {
    await applyTestTenant(
      { pool: db().pool, logger },
      pipelineTenant({
        projectId,
        telegramApiRoot: telegram.apiRoot,
        lineBaseUrl: line.baseUrl,
        modelBaseUrl: model.url,
        ...extra,
      }),
    );
    for (const [name, value] of Object.entries(TEST_SECRETS))
      await pipeline.setSecret(projectId, name, value);
  }
  apiKey = await pipeline.createKey(PROJECT);
});

afterAll(async () => {
  await pipeline?.close();
  await Promise.all([telegram?.close(), line?.close(), model?.close()]);
});

const postTelegram = (projectId: string, updateId: number, text: string, secret?: string) =>
  fetch(`${pipeline.url}/webhooks/telegram/${projectId}/tg`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'x-telegram-bot-api-secret-token': secret ?? TEST_SECRETS['tg-webhook'],
    },
    body: JSON.stringify(telegramUpdate({ updateId, chatId: 8000 + updateId, text })),
  });

const postApi = (body: unknown) =>
  fetch(`${pipeline.url}/v1/projects/${PROJECT}/messages`, {
    method: 'POST',
    headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });

/** Waits for the line `msg` about `runId` that `match` accepts. */
function lineAbout(runId: string, msg: string, match: (l: Line) => boolean = () => true) {
  return waitFor(() => lines().find((l) => l.runId === runId && l.msg === msg && match(l)), {
    what: `"${msg}" for run ${runId}`,
  });
}

function expectNothingUserWroteOrSecret() {
  const log = raw.join('\n');
  for (const text of Object.values(TEXTS)) {
    // The distinctive word of each message stands for all of it.
    expect(log).not.toContain(text.split(' ').at(-1));
  }
  for (const [name, value] of Object.entries({ ...TEST_SECRETS, apiKey })) {
    expect(log.includes(value), `${name} is in the log`).toBe(false);
  }
}

describe('per-run logs', () => {
  // Regression (issue 12, item 17): runs left only start, stop and warning lines, so no log
  // said which runs were accepted, how each stage ended or what was sent.
  it("log a Telegram run's accept, each stage's result and its delivery at info", async () => {
    const res = await postTelegram(PROJECT, 1, `${TEXTS.telegram} ${TEST_SECRETS['line-token']}`);
    expect(res.status).toBe(200);
    const runId = ((await res.json()) as { runs: string[] }).runs[0]!;

    const accepted = await lineAbout(runId, 'run accepted');
    expect(accepted).toMatchObject({
      level: 30,
      projectId: PROJECT,
      channel: 'telegram',
      accountId: 'tg',
      redactions: 1,
    });
    for (const stage of Stage.options) {
      const done = await lineAbout(runId, 'stage done', (l) => l.stage === stage);
      expect(done).toMatchObject({ level: 30, projectId: PROJECT, outcome: 'advanced' });
      expect(done.durationMs).toEqual(expect.any(Number));
    }
    expect(await lineAbout(runId, 'outbound sent')).toMatchObject({
      level: 30,
      projectId: PROJECT,
      channel: 'telegram',
      kind: 'reply',
      chunk: 0,
      method: 'sendMessage',
    });
    expectNothingUserWroteOrSecret();
  });

  it("log an API run's stored answer as its delivery", async () => {
    const res = await postApi({ text: TEXTS.api });
    expect(res.status).toBe(202);
    const { run_id: runId } = (await res.json()) as { run_id: string };
    expect(await lineAbout(runId, 'run accepted')).toMatchObject({ channel: 'api' });
    expect(await lineAbout(runId, 'outbound sent')).toMatchObject({
      level: 30,
      projectId: PROJECT,
      channel: 'api',
      kind: 'reply',
      chunks: 1,
      method: 'stored',
    });
    expect(await lineAbout(runId, 'stage done', (l) => l.stage === 'deliver')).toMatchObject({
      outcome: 'advanced',
      next: null,
    });
    expectNothingUserWroteOrSecret();
  });

  it('log each refusal at warn with its code: of a request, and of a run', async () => {
    const warns = () => lines().filter((l) => l.level === 40 && l.msg === 'request refused');
    const before = warns().length;
    expect((await postTelegram(PROJECT, 2, TEXTS.telegram, 'wrong-secret-value')).status).toBe(401);
    expect((await postApi({ text: TEXTS.refused, colour: 'blue' })).status).toBe(400);
    expect((await fetch(`${pipeline.url}/nope/${TEXTS.refused}`)).status).toBe(404);
    const refused = await waitFor(() => warns().length >= before + 3 && warns().slice(before));
    expect(refused).toEqual([
      expect.objectContaining({
        status: 401,
        code: 'SIGNATURE_INVALID',
        method: 'POST',
        route: '/webhooks/telegram/:projectId/:accountId',
        projectId: PROJECT,
      }),
      expect.objectContaining({ status: 400, code: 'BODY_INVALID', projectId: PROJECT }),
      expect.objectContaining({ status: 404, code: 'NOT_FOUND', method: 'GET' }),
    ]);

    model.respondNext({ content: `not JSON at all: ${TEXTS.schema}` });
    const res = await postTelegram(SCHEMA, 3, TEXTS.schema);
    const runId = ((await res.json()) as { runs: string[] }).runs[0]!;
    expect(await lineAbout(runId, 'run failed')).toMatchObject({
      level: 40,
      projectId: SCHEMA,
      stage: 'sanitize',
      code: 'OUTPUT_SCHEMA_INVALID',
    });
    expect(await lineAbout(runId, 'stage done', (l) => l.stage === 'sanitize')).toMatchObject({
      outcome: 'advanced',
      next: 'deliver',
      notice: true,
    });
    expect(await lineAbout(runId, 'outbound sent')).toMatchObject({ kind: 'failure' });
    expectNothingUserWroteOrSecret();
  });
});
