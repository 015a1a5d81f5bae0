import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lineWebhook, telegramUpdate } from '../../ops/fakes/channelPayloads.ts';
import { startLineServer, type LineServer } from '../fakes/lineServer.ts';
import { slackEventCallback, slackHeaders } from '../../ops/fakes/slackPayloads.ts';
import { startSlackServer, type SlackServer } from '../../ops/fakes/slackServer.ts';
import { startModelServer, type ModelServer } from '../fakes/modelServer.ts';
import { startTelegramServer, type TelegramServer } from '../../ops/fakes/telegramServer.ts';
import { runCli } from '../helpers/runCli.ts';
import { startPipeline, type Pipeline } from '../helpers/startPipeline.ts';
import { useTestDatabase } from '../helpers/testDatabase.ts';
import { useRedisPrefix } from '../helpers/useRedisPrefix.ts';
import { waitFor } from '../helpers/waitFor.ts';

// The README's "Connect a real channel and model", command for command, against local fakes
// of Telegram, LINE and a model provider: the only change to the example file is where the
// channels' APIs live (apiRoot / apiBaseUrl), which a real deployment leaves at the default.

const db = useTestDatabase();
const prefix = useRedisPrefix();
const EXAMPLE = fileURLToPath(new URL('../../examples/starter/', import.meta.url));
const BOT_TOKEN = '123456789:AAStarterExampleToken_abcdefghijk';
const WEBHOOK_SECRET = 'starter-webhook-secret-0f3a9c';
const LINE_SECRET = 'starter-line-channel-secret-77e1';
const LINE_TOKEN = 'starter-line-access-token-5b2d';
const SLACK_SIGNING = 'starter-slack-signing-secret-9c4a';
const SLACK_TOKEN = 'xoxb-starter-0000000000-slackbottoken';
const MODEL_KEY = 'sk-starter-model-key-c41f';

let pipeline: Pipeline;
let telegram: TelegramServer;
let line: LineServer;
let slack: SlackServer;
let model: ModelServer;
let work: string;
let tenantFile: string;

const awooop = (args: string[], env: Record<string, string> = {}) =>
  runCli(['--actor', 'test:starter', ...args], {
    DATABASE_URL: db().url,
    AWOOOP_REDIS_PREFIX: prefix,
    AWOOOP_SECRET_KEY: pipeline.secretKey.toString('hex'),
    ...env,
  });

beforeAll(async () => {
  pipeline = await startPipeline({ pool: db().pool, prefix });
  telegram = await startTelegramServer({ token: BOT_TOKEN });
  line = await startLineServer({ accessToken: LINE_TOKEN });
  slack = await startSlackServer({ token: SLACK_TOKEN });
  model = await startModelServer({ apiKey: MODEL_KEY });
  work = await mkdtemp(join(tmpdir(), 'awooop-starter-'));
  await cp(EXAMPLE, work, { recursive: true });
  tenantFile = join(work, 'tenant.yaml');
  const yaml = (await readFile(tenantFile, 'utf8'))
    .replace(
      '    webhookSecret: "secret:telegram-webhook-secret"\n',
      `    webhookSecret: "secret:telegram-webhook-secret"\n    apiRoot: ${telegram.apiRoot}\n`,
    )
    .replace(
      '    channelAccessToken: "secret:line-channel-access-token"\n',
      `    channelAccessToken: "secret:line-channel-access-token"\n    apiBaseUrl: ${line.baseUrl}\n`,
    )
    .replace(
      '    botToken: "secret:slack-bot-token"\n',
      `    botToken: "secret:slack-bot-token"\n    apiBaseUrl: ${slack.apiBaseUrl}\n`,
    );
  expect(yaml).toContain(slack.apiBaseUrl);
  expect(yaml).toContain(telegram.apiRoot);
  expect(yaml).toContain(line.baseUrl);
  await writeFile(tenantFile, yaml);
});

afterAll(async () => {
  await pipeline?.close();
  await Promise.all([telegram?.close(), line?.close(), slack?.close(), model?.close()]);
  if (work) await rm(work, { recursive: true, force: true });
});

async function expectOk(args: string[], env?: Record<string, string>): Promise<string> {
  const result = await awooop(args, env);
  expect(result.stderr).not.toMatch(/error|refused|invalid/i);
  expect(result.code).toBe(0);
  return result.stdout;
}

describe('the starter example, connected as the README says', () => {
  it('applies as written', async () => {
    const out = await expectOk(['apply', '-f', tenantFile]);
    expect(out).toContain('flow default: mode read_only');
  });

  it('answers a Telegram user once the bot token and webhook secret are set', async () => {
    const env = { TELEGRAM_BOT_TOKEN: BOT_TOKEN, TELEGRAM_WEBHOOK_SECRET: WEBHOOK_SECRET };
    await expectOk(
      [
        'secrets',
        'set',
        'telegram-bot-token',
        '--project',
        'starter',
        '--from-env',
        'TELEGRAM_BOT_TOKEN',
      ],
      env,
    );
    await expectOk(
      [
        'secrets',
        'set',
        'telegram-webhook-secret',
        '--project',
        'starter',
        '--from-env',
        'TELEGRAM_WEBHOOK_SECRET',
      ],
      env,
    );
    const res = await fetch(`${pipeline.url}/webhooks/telegram/starter/telegram`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'x-telegram-bot-api-secret-token': WEBHOOK_SECRET,
      },
      body: JSON.stringify(telegramUpdate({ updateId: 5001, chatId: 424242, text: 'hi bot' })),
    });
    expect(res.status).toBe(200);
    const sent = await waitFor(() => telegram.sent.find((m) => m.text === 'echo: hi bot'), {
      what: 'the Telegram reply',
    });
    expect(sent.chat_id).toBe('424242');
    expect(sent.token).toBe(BOT_TOKEN);
    expect(telegram.sent.filter((m) => m.text === 'echo: hi bot')).toHaveLength(1);
  });

  it('answers a LINE user once the channel secret and access token are set', async () => {
    const env = { LINE_CHANNEL_SECRET: LINE_SECRET, LINE_CHANNEL_ACCESS_TOKEN: LINE_TOKEN };
    await expectOk(
      [
        'secrets',
        'set',
        'line-channel-secret',
        '--project',
        'starter',
        '--from-env',
        'LINE_CHANNEL_SECRET',
      ],
      env,
    );
    await expectOk(
      [
        'secrets',
        'set',
        'line-channel-access-token',
        '--project',
        'starter',
        '--from-env',
        'LINE_CHANNEL_ACCESS_TOKEN',
      ],
      env,
    );
    const call = lineWebhook({ events: [{ text: 'hi line' }], channelSecret: LINE_SECRET });
    const res = await fetch(`${pipeline.url}/webhooks/line/starter/line`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-line-signature': call.signature },
      body: call.body,
    });
    expect(res.status).toBe(200);
    const replies = await waitFor(
      () => {
        const all = [...line.replies, ...line.pushes].filter((r) =>
          r.messages.some((m) => m.text === 'echo: hi line'),
        );
        return all.length > 0 && all;
      },
      { what: 'the LINE reply' },
    );
    expect(replies).toHaveLength(1);
  });

  it('answers a Slack mention in its thread once the signing secret and bot token are set', async () => {
    const env = { SLACK_SIGNING_SECRET: SLACK_SIGNING, SLACK_BOT_TOKEN: SLACK_TOKEN };
    for (const [name, from] of [
      ['slack-signing-secret', 'SLACK_SIGNING_SECRET'],
      ['slack-bot-token', 'SLACK_BOT_TOKEN'],
    ] as const) {
      await expectOk(['secrets', 'set', name, '--project', 'starter', '--from-env', from], env);
    }
    const ts = '1700000000.000100';
    const body = JSON.stringify(
      slackEventCallback({ eventId: 'Ev0STARTER1', kind: 'app_mention', text: 'hi slack', ts }),
    );
    const res = await fetch(`${pipeline.url}/webhooks/slack/starter/slack`, {
      method: 'POST',
      headers: slackHeaders(body, SLACK_SIGNING),
      body,
    });
    expect(res.status).toBe(200);
    const post = await waitFor(() => slack.posts.find((p) => p.text === 'echo: hi slack'), {
      what: 'the Slack reply',
    });
    expect(post).toMatchObject({ channel: 'C0LAN2Q65', threadTs: ts, token: SLACK_TOKEN });
  });

  it('answers from a real model route once its key is stored and the file applied again', async () => {
    const yaml = await readFile(tenantFile, 'utf8');
    const routed = yaml.replace(
      '      primary: { provider: echo }\n',
      [
        '      primary:',
        '        provider: openai_compatible',
        '        model: gpt-4o-mini',
        `        baseUrl: ${model.url}`,
        '        apiKey: "secret:model-api-key"',
        '',
      ].join('\n'),
    );
    expect(routed).not.toBe(yaml);
    await writeFile(tenantFile, routed);
    await expectOk(
      ['secrets', 'set', 'model-api-key', '--project', 'starter', '--from-env', 'MODEL_API_KEY'],
      { MODEL_API_KEY: MODEL_KEY },
    );
    expect(await expectOk(['apply', '-f', tenantFile])).toContain('policy/default v2');

    const key = await pipeline.createKey('starter');
    const accepted = await fetch(`${pipeline.url}/v1/projects/starter/messages`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ text: 'hello model' }),
    });
    expect(accepted.status).toBe(202);
    const { run_id: runId } = (await accepted.json()) as { run_id: string };
    const run = await waitFor(
      async () => {
        const res = await fetch(`${pipeline.url}/v1/projects/starter/runs/${runId}`, {
          headers: { authorization: `Bearer ${key}` },
        });
        const body = (await res.json()) as { state: string; output: string | null };
        return ['COMPLETED', 'FAILED'].includes(body.state) && body;
      },
      { what: 'the model run' },
    );
    expect(run).toMatchObject({ state: 'COMPLETED', output: 'model: hello model' });
  });
});
