import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lineWebhook, telegramUpdate } from '../../ops/fakes/channelPayloads.ts';
import { applyTestTenant, pipelineTenant, TEST_SECRETS } from '../../ops/fakes/pipelineTenant.ts';
import { startTelegramServer } from '../../ops/fakes/telegramServer.ts';
import { ChannelContract } from '../../pipeline/contracts/channelContract.ts';
import { startLineServer } from '../fakes/lineServer.ts';
import { startModelServer } from '../fakes/modelServer.ts';
import { slackEventCallback, slackHeaders } from '../../ops/fakes/slackPayloads.ts';
import { startSlackServer } from '../../ops/fakes/slackServer.ts';
import { runCli } from '../helpers/runCli.ts';
import { startPipeline, type Pipeline } from '../helpers/startPipeline.ts';
import { tableCounts } from '../helpers/tableCounts.ts';
import { useTestDatabase } from '../helpers/testDatabase.ts';
import { useRedisPrefix } from '../helpers/useRedisPrefix.ts';
import { waitFor } from '../helpers/waitFor.ts';

// Media end to end: a photo, file or shared file comes in on each channel, the run's model
// is told what was attached (the fake model records the prompt), the answer goes out once,
// and no fake channel server is ever asked for the file itself.
const db = useTestDatabase();
const prefix = useRedisPrefix();
const PROJECT = 'mediaco';
const SIGNING_SECRET = 'slack-signing-secret-0123456789abcdef';
const BOT_TOKEN = 'xoxb-1234567890-0987654321-AbCdEfGhIjKlMnOpQrStUvWx';
const NOTE_HEAD =
  'Only a reference is kept; the contents are not available here. Names and types are as the sender gave them, quoted.]';

let telegram: Awaited<ReturnType<typeof startTelegramServer>>;
let line: Awaited<ReturnType<typeof startLineServer>>;
let slack: Awaited<ReturnType<typeof startSlackServer>>;
let model: Awaited<ReturnType<typeof startModelServer>>;
let pipeline: Pipeline;
let owner: pg.Client;

beforeAll(async () => {
  telegram = await startTelegramServer();
  line = await startLineServer();
  slack = await startSlackServer({ token: BOT_TOKEN });
  model = await startModelServer();
  pipeline = await startPipeline({ pool: db().pool, prefix });
  owner = await db().owner();
  const input = pipelineTenant({
    projectId: PROJECT,
    telegramApiRoot: telegram.apiRoot,
    lineBaseUrl: line.baseUrl,
    modelBaseUrl: model.url,
  });
  // Telegram keeps files up to 50 kB here; the API account keeps one attachment a message.
  input.tenant.channels.tg!.media = { maxAttachments: 10, maxBytes: 50_000 };
  input.tenant.channels.api!.media = { maxAttachments: 1, maxBytes: 20_000_000 };
  input.tenant.channels.sl = ChannelContract.parse({
    type: 'slack',
    signingSecret: 'secret:slack-signing',
    botToken: 'secret:slack-bot',
    apiBaseUrl: slack.apiBaseUrl,
  });
  await applyTestTenant({ pool: db().pool, logger: pipeline.ctx.logger }, input);
  for (const [name, value] of Object.entries(TEST_SECRETS))
    await pipeline.setSecret(PROJECT, name, value);
  await pipeline.setSecret(PROJECT, 'slack-signing', SIGNING_SECRET);
  await pipeline.setSecret(PROJECT, 'slack-bot', BOT_TOKEN);
});

afterAll(async () => {
  await pipeline?.close();
  await Promise.all([telegram?.close(), line?.close(), slack?.close(), model?.close()]);
});

type RunRow = { run_id: string; state: string };
async function runsOf(externalEventId: string): Promise<RunRow[]> {
  const { rows } = await owner.query<RunRow>(
    `SELECT r.run_id, r.state FROM runs r JOIN conversation_events e USING (event_id)
      WHERE e.external_event_id = $1`,
    [externalEventId],
  );
  return rows;
}
const completed = (externalEventId: string) =>
  waitFor(
    async () => {
      const runs = await runsOf(externalEventId);
      return runs.length > 0 && runs.every((r) => r.state === 'COMPLETED' || r.state === 'FAILED')
        ? runs
        : undefined;
    },
    { what: `the run of ${externalEventId} to finish` },
  );

/** The messages of the model request whose last user turn contains `marker`. */
function promptWith(marker: string) {
  const requests = model.requests.filter((r) => {
    const last = r.body.messages.at(-1);
    return typeof last?.content === 'string' && last.content.includes(marker);
  });
  expect(requests).toHaveLength(1);
  return requests[0]!.body.messages;
}

function postTelegram(update: object) {
  return fetch(`${pipeline.url}/webhooks/telegram/${PROJECT}/tg`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'x-telegram-bot-api-secret-token': TEST_SECRETS['tg-webhook'],
    },
    body: JSON.stringify(update),
  });
}

/** Every path the Telegram fake saw was a send or a typing action: no getFile, no download. */
function expectNoTelegramDownload() {
  expect(telegram.paths.length).toBeGreaterThan(0);
  for (const path of telegram.paths)
    expect(path).toMatch(/^\/bot[^/]+\/(sendMessage|sendChatAction)$/);
}

describe('Telegram media', () => {
  it('tells the model about a photo over the cap, answers once for five copies, and fetches nothing', async () => {
    const update = telegramUpdate({
      updateId: 70_001,
      chatId: 7001,
      text: 'what is in this graph?',
      asCaption: true,
    });
    const photo = (update.message as { photo: Record<string, unknown>[] }).photo;
    photo.push({
      file_id: 'AgACAgQAAxkBAAIB-large',
      file_unique_id: 'AQADc7-large',
      file_size: 101_342,
      width: 800,
      height: 600,
    });
    const answers = await Promise.all(Array.from({ length: 5 }, () => postTelegram(update)));
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200, 200, 200]);
    const runs = await completed('70001');
    expect(runs).toMatchObject([{ state: 'COMPLETED' }]);

    const note = [
      'what is in this graph?',
      '',
      `[The user sent 1 attachment. ${NOTE_HEAD}`,
      '1. image, 101 kB, not kept: over the size limit',
    ].join('\n');
    expect(promptWith('what is in this graph?').at(-1)).toEqual({ role: 'user', content: note });
    const replies = telegram.sent.filter((m) => String(m.chat_id) === '7001');
    expect(replies).toHaveLength(1);
    expect(replies[0]!.text).toContain('model: what is in this graph?');
    expectNoTelegramDownload();
  });

  it('makes a run of a document without a caption, and the next turn still knows it was sent', async () => {
    const first = telegramUpdate({ updateId: 70_002, chatId: 7002, text: 'x' });
    const message = first.message as Record<string, unknown>;
    delete message.text;
    message.document = {
      file_name: 'incident-report.pdf',
      mime_type: 'application/pdf',
      file_id: 'BQACAgIAAxkBAAIBZWVj',
      file_unique_id: 'AgADXw8AAkZ8',
      file_size: 48_213,
    };
    expect((await postTelegram(first)).status).toBe(200);
    await completed('70002');
    const note = [
      `[The user sent 1 attachment. ${NOTE_HEAD}`,
      '1. file, name "incident-report.pdf", type application/pdf, 48 kB',
    ].join('\n');
    expect(promptWith('incident-report.pdf').at(-1)).toEqual({ role: 'user', content: note });

    await postTelegram(
      telegramUpdate({ updateId: 70_003, chatId: 7002, text: 'summarise the report' }),
    );
    await completed('70003');
    const followUp = promptWith('summarise the report');
    expect(followUp.at(-1)).toEqual({ role: 'user', content: 'summarise the report' });
    expect(followUp).toContainEqual({ role: 'user', content: note });
    expect(telegram.sent.filter((m) => String(m.chat_id) === '7002')).toHaveLength(2);
    expectNoTelegramDownload();
  });
});

describe('LINE media', () => {
  it('makes a run of an image and of a file, tells the model, and never calls the content API', async () => {
    const source = { type: 'user', userId: 'U4af4980629aaaaaaaaaaaaaaaaaaaaab' };
    const event = (id: string, message: Record<string, unknown>) => ({
      type: 'message',
      message,
      timestamp: Date.now(),
      source,
      webhookEventId: id,
      deliveryContext: { isRedelivery: false },
      replyToken: `${id.toLowerCase()}0000000000000000`,
      mode: 'active',
    });
    const signed = lineWebhook({
      channelSecret: TEST_SECRETS['line-secret'],
      events: [
        {
          raw: event('01MEDIAIMAGE00000000000001', {
            type: 'image',
            id: '354718705033693859',
            quoteToken: 'q3Plxr4AgKd',
            contentProvider: { type: 'line' },
          }),
        },
        {
          raw: event('01MEDIAFILE000000000000001', {
            type: 'file',
            id: '354718705033693860',
            fileName: 'quarterly numbers.xlsx',
            fileSize: 2_138_000,
          }),
        },
      ],
    });
    const res = await fetch(`${pipeline.url}/webhooks/line/${PROJECT}/ln`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-line-signature': signed.signature },
      body: signed.body,
    });
    expect(res.status).toBe(200);
    await completed('01MEDIAIMAGE00000000000001');
    await completed('01MEDIAFILE000000000000001');
    const imageNote = `[The user sent 1 attachment. ${NOTE_HEAD}\n1. image`;
    const imageTurns = model.requests.filter((r) => r.body.messages.at(-1)?.content === imageNote);
    expect(imageTurns).toHaveLength(1);
    expect(promptWith('quarterly numbers.xlsx').at(-1)).toEqual({
      role: 'user',
      content: `[The user sent 1 attachment. ${NOTE_HEAD}\n1. file, name "quarterly numbers.xlsx", 2.1 MB`,
    });
    await waitFor(() => line.replies.length + line.pushes.length >= 2 || undefined, {
      what: 'both answers',
    });
    expect(line.replies.length + line.pushes.length).toBe(2);
    for (const request of line.requests) expect(request.path).not.toMatch(/content/);
    expect(line.requests.map((r) => r.path).sort()).toEqual(
      expect.arrayContaining(['/v2/bot/message/reply']),
    );
  });
});

describe('Slack files', () => {
  it('tells the model about the files of a file_share message and never asks Slack for them', async () => {
    const fileUrl = `${slack.apiBaseUrl.replace(/api\/$/, '')}files-pri/T061EG9R6-F0RDC39U1/graph.png`;
    const body = JSON.stringify(
      slackEventCallback({
        eventId: 'Ev0MEDIA0001',
        kind: 'im',
        text: 'here is the graph',
        ts: '1519327236.000090',
        extra: {
          subtype: 'file_share',
          upload: false,
          files: [
            {
              id: 'F0RDC39U1',
              created: 1519327234,
              name: 'graph.png',
              title: 'graph.png',
              mimetype: 'image/png',
              filetype: 'png',
              size: 45_238,
              mode: 'hosted',
              url_private: fileUrl,
              url_private_download: fileUrl,
            },
          ],
        },
      }),
    );
    const res = await fetch(`${pipeline.url}/webhooks/slack/${PROJECT}/sl`, {
      method: 'POST',
      headers: slackHeaders(body, SIGNING_SECRET),
      body,
    });
    expect(res.status).toBe(200);
    await completed('Ev0MEDIA0001');
    expect(promptWith('here is the graph').at(-1)).toEqual({
      role: 'user',
      content: [
        'here is the graph',
        '',
        `[The user sent 1 attachment. ${NOTE_HEAD}`,
        '1. image, name "graph.png", type image/png, 45 kB',
      ].join('\n'),
    });
    expect(slack.posts.filter((p) => p.threadTs === '1519327236.000090')).toHaveLength(1);
    expect(slack.requests.map((r) => r.path)).toEqual(
      slack.requests.map(() => '/api/chat.postMessage'),
    );
  });
});

describe('API attachments', () => {
  const runDone = (runId: string) =>
    waitFor(
      async () => {
        const { rows } = await owner.query<{ state: string }>(
          'SELECT state FROM runs WHERE run_id = $1',
          [runId],
        );
        return rows[0]?.state === 'COMPLETED' || undefined;
      },
      { what: `run ${runId} to complete` },
    );

  async function send(key: string, body: unknown, idem?: string) {
    const res = await fetch(`${pipeline.url}/v1/projects/${PROJECT}/messages`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${key}`,
        'content-type': 'application/json',
        ...(idem ? { 'idempotency-key': idem } : {}),
      },
      body: JSON.stringify(body),
    });
    return {
      status: res.status,
      body: (await res.json()) as {
        run_id?: string;
        duplicate?: boolean;
        error?: { code: string; message: string };
      },
    };
  }

  it('keeps references the client sends, past the cap marked, shown on the run and to the model', async () => {
    const key = await pipeline.createKey(PROJECT);
    const body = {
      text: '',
      attachments: [
        {
          kind: 'image',
          ref: 'https://files.example.test/a.png',
          mime_type: 'image/png',
          size_bytes: 5_000,
          name: 'a.png',
        },
        // A terminal escape in a name: quoted wherever it is shown, never sent raw.
        { kind: 'file', ref: 'store:42', name: 'b\u001b[2J.csv' },
      ],
    };
    const sent = await send(key, body, 'media-1');
    expect(sent.status).toBe(202);
    expect((await send(key, body, 'media-1')).body).toEqual({
      run_id: sent.body.run_id,
      duplicate: true,
    });
    const runId = sent.body.run_id!;
    await runDone(runId);
    const view = await fetch(`${pipeline.url}/v1/projects/${PROJECT}/runs/${runId}`, {
      headers: { authorization: `Bearer ${key}` },
    });
    expect(((await view.json()) as { attachments: unknown }).attachments).toEqual([
      {
        kind: 'image',
        ref: 'https://files.example.test/a.png',
        mime_type: 'image/png',
        size_bytes: 5000,
        name: 'a.png',
        omitted: null,
      },
      {
        kind: 'file',
        ref: 'store:42',
        mime_type: null,
        size_bytes: null,
        name: 'b\u001b[2J.csv',
        omitted: 'too_many',
      },
    ]);
    expect(promptWith('"b\\u001b[2J.csv"').at(-1)).toEqual({
      role: 'user',
      content: [
        `[The user sent 2 attachments. ${NOTE_HEAD}`,
        '1. image, name "a.png", type image/png, 5.0 kB',
        '2. file, name "b\\u001b[2J.csv", not kept: past the limit of attachments a message',
      ].join('\n'),
    });

    const shown = await runCli(['runs', 'show', runId, '--project', PROJECT], {
      DATABASE_URL: db().url,
    });
    expect(shown.code).toBe(0);
    expect(shown.stdout).toContain(
      [
        'attachments:',
        '  image "a.png"  "image/png"  5000 bytes  ref "https://files.example.test/a.png"',
        '  file "b\\u001b[2J.csv"  omitted: too_many  ref "store:42"',
      ].join('\n'),
    );
    expect(shown.stdout).not.toContain('\u001b');
  });

  it("stores an attachment name without the project's credential values in it", async () => {
    const key = await pipeline.createKey(PROJECT);
    const secret = TEST_SECRETS['model-key'];
    const sent = await send(key, {
      text: 'see file',
      attachments: [{ kind: 'file', ref: 'store:43', name: `keys ${secret}.txt` }],
    });
    expect(sent.status).toBe(202);
    const { rows } = await owner.query<{ body: { message: { attachments: { name: string }[] } } }>(
      'SELECT e.body FROM runs r JOIN conversation_events e USING (event_id) WHERE r.run_id = $1',
      [sent.body.run_id],
    );
    expect(rows[0]!.body.message.attachments[0]!.name).toBe('keys [REDACTED].txt');
    expect(JSON.stringify(rows[0]!.body)).not.toContain(secret);
    await runDone(sent.body.run_id!);
  });

  it('refuses a bad attachment or an empty message with 400 naming the field, and writes nothing', async () => {
    const key = await pipeline.createKey(PROJECT);
    const cases: [unknown, string][] = [
      [{ text: 'hi', attachments: [{ kind: 'pdf', ref: 'r' }] }, 'attachments[0].kind'],
      [{ text: 'hi', attachments: [{ kind: 'file', ref: '' }] }, 'attachments[0].ref'],
      [{ text: 'hi', attachments: [{ kind: 'file', ref: 'r', size_bytes: -1 }] }, 'size_bytes'],
      [{ text: 'hi', attachments: [{ kind: 'file', ref: 'r', url: 'x' }] }, 'url'],
      [{ text: 'hi', attachments: [{ kind: 'file', ref: 'r', omitted: 'too_many' }] }, 'omitted'],
      [{ text: '' }, 'text'],
      [{ text: '', attachments: [] }, 'text'],
    ];
    for (const [body, field] of cases) {
      const before = await tableCounts(owner);
      const answer = await send(key, body);
      expect(answer.status).toBe(400);
      expect(answer.body.error?.code).toBe('BODY_INVALID');
      expect(answer.body.error?.message).toContain(field);
      expect(await tableCounts(owner)).toEqual(before);
    }
  });
});
