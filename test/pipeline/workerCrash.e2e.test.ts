import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { telegramUpdate } from '../../ops/fakes/channelPayloads.ts';
import { startLineServer } from '../fakes/lineServer.ts';
import { startModelServer } from '../fakes/modelServer.ts';
import { startTelegramServer } from '../../ops/fakes/telegramServer.ts';
import { applyTestTenant, pipelineTenant, TEST_SECRETS } from '../../ops/fakes/pipelineTenant.ts';
import { startPipeline, type Pipeline } from '../helpers/startPipeline.ts';
import { useTestDatabase } from '../helpers/testDatabase.ts';
import { TEST_REDIS_URL, useRedisPrefix } from '../helpers/useRedisPrefix.ts';
import { waitFor } from '../helpers/waitFor.ts';
import { projectNode } from '../../ops/projectNode.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const db = useTestDatabase();
const prefix = useRedisPrefix();

let telegram: Awaited<ReturnType<typeof startTelegramServer>>;
let line: Awaited<ReturnType<typeof startLineServer>>;
let model: Awaited<ReturnType<typeof startModelServer>>;
let pipeline: Pipeline;
const children: ChildProcess[] = [];

/** A real `awooop worker execute` process on this file's database and Redis prefix. */
function startExecuteWorker(): ChildProcess {
  const child = spawn(projectNode(), ['ops/awooop.ts', 'worker', 'execute'], {
    cwd: ROOT,
    env: {
      ...process.env,
      DATABASE_URL: db().url,
      REDIS_URL: TEST_REDIS_URL,
      AWOOOP_REDIS_PREFIX: prefix,
      AWOOOP_SECRET_KEY: pipeline.secretKey.toString('hex'),
      AWOOOP_JOB_LOCK_MS: '2000',
      AWOOOP_WORKER_CONCURRENCY: '4',
      LOG_LEVEL: 'error',
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  children.push(child);
  return child;
}

beforeAll(async () => {
  telegram = await startTelegramServer();
  line = await startLineServer();
  model = await startModelServer();
  pipeline = await startPipeline({ pool: db().pool, prefix, workers: false });
  pipeline.startWorkers(['resolve', 'policy', 'sanitize', 'deliver']);
  await applyTestTenant(
    { pool: db().pool, logger: pipeline.ctx.logger },
    pipelineTenant({
      projectId: 'crash',
      telegramApiRoot: telegram.apiRoot,
      lineBaseUrl: line.baseUrl,
      modelBaseUrl: model.url,
    }),
  );
  for (const [name, value] of Object.entries(TEST_SECRETS))
    await pipeline.setSecret('crash', name, value);
});

afterAll(async () => {
  for (const child of children) child.kill('SIGKILL');
  await pipeline?.close();
  await Promise.all([telegram?.close(), line?.close(), model?.close()]);
});

describe('a worker killed in the middle of execute', () => {
  it('leaves every run to complete and every reply sent once', async () => {
    const first = startExecuteWorker();
    model.setDelay(1500);
    const chats = [6001, 6002, 6003, 6004];
    let updateId = 9000;
    for (const chatId of chats) {
      const res = await fetch(`${pipeline.url}/webhooks/telegram/crash/tg`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'x-telegram-bot-api-secret-token': TEST_SECRETS['tg-webhook'],
        },
        body: JSON.stringify(
          telegramUpdate({ updateId: updateId++, chatId, text: `hi ${chatId}` }),
        ),
      });
      expect(res.status).toBe(200);
    }
    // the model has been asked: the worker is inside execute
    await waitFor(() => model.requests.length >= 1 || undefined, {
      what: 'a model request',
      timeoutMs: 90_000,
    });
    first.kill('SIGKILL');
    await new Promise((r) => first.once('exit', r));
    model.setDelay(0);
    startExecuteWorker();
    for (const chatId of chats) {
      await waitFor(
        () => telegram.sent.some((m) => String(m.chat_id) === String(chatId)) || undefined,
        {
          what: `the reply to ${chatId}`,
          timeoutMs: 90_000,
        },
      );
    }
    await new Promise((r) => setTimeout(r, 500));
    for (const chatId of chats) {
      expect(
        telegram.sent.filter((m) => String(m.chat_id) === String(chatId)).map((m) => m.text),
      ).toEqual([`model: hi ${chatId}`]);
    }
  });
});
