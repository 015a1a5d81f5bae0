import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lineWebhook, telegramUpdate } from '../../ops/fakes/channelPayloads.ts';
import { applyTestTenant, pipelineTenant, TEST_SECRETS } from '../../ops/fakes/pipelineTenant.ts';
import { startTelegramServer } from '../../ops/fakes/telegramServer.ts';
import { admissionKeys } from '../../pipeline/admission/admissionKeys.ts';
import { discordPlugin } from '../../pipeline/channels/discord/discordPlugin.ts';
import { emailPlugin } from '../../pipeline/channels/email/emailPlugin.ts';
import { slackPlugin } from '../../pipeline/channels/slack/slackPlugin.ts';
import { telegramPlugin } from '../../pipeline/channels/telegram/telegramPlugin.ts';
import { stageJobId } from '../../pipeline/contracts/runState.ts';
import type { ChannelLimits } from '../../pipeline/contracts/channelContract.ts';
import type { ProjectLimits } from '../../pipeline/contracts/projectContract.ts';
import { startLineServer } from '../fakes/lineServer.ts';
import { startPipeline, type Pipeline } from '../helpers/startPipeline.ts';
import { tableCounts } from '../helpers/tableCounts.ts';
import { useTestDatabase } from '../helpers/testDatabase.ts';
import { useRedisPrefix } from '../helpers/useRedisPrefix.ts';
import { waitFor } from '../helpers/waitFor.ts';

// Issue 15, items 2 and 4: ingress accepted everything it was sent — no limit per project,
// account or sender, and no bound on the backlog — so one tenant's flood queued ahead of
// everyone, and under overload runs were written for clients that had long given up.
const db = useTestDatabase();
const prefix = useRedisPrefix();
const BOUNDS = { maxBacklog: 5, projectMaxBacklog: 3, backlogRetryAfterS: 7 };

let telegram: Awaited<ReturnType<typeof startTelegramServer>>;
let line: Awaited<ReturnType<typeof startLineServer>>;
let pipeline: Pipeline;
let owner: pg.Client;
const keys: Record<string, string> = {};
let workersRunning = false;

/** Applies a test tenant (echo model) with the given limits, and stores its secrets. */
async function tenant(
  projectId: string,
  limits: {
    project?: ProjectLimits;
    tg?: ChannelLimits;
    ln?: ChannelLimits;
    lineRedelivery?: boolean;
  } = {},
): Promise<void> {
  const input = pipelineTenant({
    projectId,
    telegramApiRoot: telegram.apiRoot,
    lineBaseUrl: line.baseUrl,
  });
  if (limits.project) input.tenant.project.limits = limits.project;
  const channels = input.tenant.channels;
  if (limits.tg) channels['tg']!.limits = limits.tg;
  if (limits.ln) channels['ln']!.limits = limits.ln;
  const ln = channels['ln']!;
  if (limits.lineRedelivery && ln.type === 'line') ln.redelivery = true;
  await applyTestTenant({ pool: db().pool, logger: pipeline.ctx.logger }, input);
  for (const [name, value] of Object.entries(TEST_SECRETS))
    await pipeline.setSecret(projectId, name, value);
  keys[projectId] = await pipeline.createKey(projectId);
}

beforeAll(async () => {
  telegram = await startTelegramServer();
  line = await startLineServer();
  pipeline = await startPipeline({
    pool: db().pool,
    prefix,
    workers: false,
    admission: BOUNDS,
  });
  owner = await db().owner();
  await tenant('adm-a');
  await tenant('adm-b');
  await tenant('adm-rate', { project: { messagesPerMinute: 2 } });
  await tenant('adm-peer', { tg: { perSenderPerMinute: 1 } });
  await tenant('adm-line', { ln: { perSenderPerMinute: 1 } });
  await tenant('adm-line-rd', { ln: { perSenderPerMinute: 1 }, lineRedelivery: true });
});

afterAll(async () => {
  await pipeline?.close();
  await Promise.all([telegram?.close(), line?.close()]);
});

function postApi(projectId: string, text: string): Promise<Response> {
  return fetch(`${pipeline.url}/v1/projects/${projectId}/messages`, {
    method: 'POST',
    headers: { authorization: `Bearer ${keys[projectId]}`, 'content-type': 'application/json' },
    body: JSON.stringify({ text, conversation_id: `c-${text}` }),
  });
}

function postTelegram(projectId: string, updateId: number, fromId: number): Promise<Response> {
  return fetch(`${pipeline.url}/webhooks/telegram/${projectId}/tg`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'x-telegram-bot-api-secret-token': TEST_SECRETS['tg-webhook'],
    },
    body: JSON.stringify(telegramUpdate({ updateId, chatId: fromId, text: `hi ${updateId}` })),
  });
}

function postLine(projectId: string, userId: string): Promise<Response> {
  const call = lineWebhook({
    events: [{ text: 'hello', userId }],
    channelSecret: TEST_SECRETS['line-secret'],
  });
  return fetch(`${pipeline.url}/webhooks/line/${projectId}/ln`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-line-signature': call.signature },
    body: call.body,
  });
}

/**
 * What ingress writes: the whole schema while no worker runs (a refusal must leave every table
 * as it was), the rows only ingress makes once workers run and move other runs on.
 */
async function written(): Promise<Record<string, number>> {
  const counts = await tableCounts(owner);
  if (!workersRunning) return counts;
  return { runs: counts['runs']!, conversation_events: counts['conversation_events']! };
}

/** Checks a refusal: status, code, a Retry-After of whole seconds, and nothing written. */
async function expectRefused(
  send: () => Promise<Response>,
  status: number,
  code: string,
  retryAfter?: number,
): Promise<number> {
  const before = await written();
  const res = await send();
  expect(res.status).toBe(status);
  expect(((await res.json()) as { error: { code: string } }).error.code).toBe(code);
  const header = res.headers.get('retry-after');
  expect(header).toMatch(/^\d+$/);
  if (retryAfter !== undefined) expect(Number(header)).toBe(retryAfter);
  expect(await written()).toEqual(before);
  return Number(header);
}

async function runState(runId: string): Promise<string | undefined> {
  const { rows } = await owner.query<{ state: string }>(
    'SELECT state FROM runs WHERE run_id = $1',
    [runId],
  );
  return rows[0]?.state;
}

describe('backlog bounds', () => {
  const accepted: Record<string, string[]> = { 'adm-a': [], 'adm-b': [] };

  it("refuses a project's message past its backlog with 429 and the platform's with 503, writing nothing", async () => {
    for (const i of [1, 2, 3]) {
      const res = await postApi('adm-a', `a${i}`);
      expect(res.status).toBe(202);
      accepted['adm-a']!.push(((await res.json()) as { run_id: string }).run_id);
    }
    await expectRefused(() => postApi('adm-a', 'a4'), 429, 'PROJECT_BACKLOG_FULL', 7);
    // B has a backlog of its own: the platform's bound (5) is what it meets.
    for (const i of [1, 2]) {
      const res = await postApi('adm-b', `b${i}`);
      expect(res.status).toBe(202);
      accepted['adm-b']!.push(((await res.json()) as { run_id: string }).run_id);
    }
    await expectRefused(() => postApi('adm-b', 'b3'), 503, 'PLATFORM_BUSY', 7);
  });

  it('queues each run behind the smaller backlogs: its priority is 1 + its project’s runs before it', async () => {
    const priorities = async (projectId: string) =>
      Promise.all(
        accepted[projectId]!.map(
          async (runId) =>
            (await pipeline.queues.queues.resolve.getJob(stageJobId('resolve', runId, false)))?.opts
              .priority,
        ),
      );
    expect(await priorities('adm-a')).toEqual([1, 2, 3]);
    // B's first run goes before A's second and third, though it came after them.
    expect(await priorities('adm-b')).toEqual([1, 2]);
  });

  it('keeps a run’s priority in its next stage', async () => {
    pipeline.startWorkers(['resolve']);
    const third = accepted['adm-a']![2]!;
    const job = await waitFor(
      async () => pipeline.queues.queues.policy.getJob(stageJobId('policy', third, false)),
      { what: 'the policy job of A’s third run', timeoutMs: 60_000 },
    );
    expect(job.opts.priority).toBe(3);
  });

  it('takes new messages again once the backlog has finished', async () => {
    pipeline.startWorkers(['policy', 'execute', 'sanitize', 'deliver']);
    workersRunning = true;
    for (const runId of [...accepted['adm-a']!, ...accepted['adm-b']!]) {
      await waitFor(async () => (await runState(runId)) === 'COMPLETED', {
        what: `run ${runId} to complete`,
        timeoutMs: 60_000,
      });
    }
    // The last stage's release is a moment after the run's final transition.
    await waitFor(
      async () => (await pipeline.ctx.redis.zcard(admissionKeys.allRuns(prefix))) === 0,
      { what: 'the backlog to empty', timeoutMs: 30_000 },
    );
    expect((await postApi('adm-a', 'a5')).status).toBe(202);
  });
});

describe('rate limits', () => {
  it("refuses a project's messages past its per-minute rate with 429 and Retry-After", async () => {
    expect((await postApi('adm-rate', 'r1')).status).toBe(202);
    expect((await postApi('adm-rate', 'r2')).status).toBe(202);
    // 2 a minute: the next slot is 30 s after the burst's start.
    const wait = await expectRefused(() => postApi('adm-rate', 'r3'), 429, 'TOO_MANY_MESSAGES');
    expect(wait).toBeGreaterThanOrEqual(1);
    expect(wait).toBeLessThanOrEqual(30);
  });

  it('refuses one Telegram sender past its limit and lets another sender through', async () => {
    expect((await postTelegram('adm-peer', 1, 7001)).status).toBe(200);
    const wait = await expectRefused(
      () => postTelegram('adm-peer', 2, 7001),
      429,
      'TOO_MANY_MESSAGES',
    );
    expect(wait).toBeGreaterThan(30);
    expect((await postTelegram('adm-peer', 3, 7002)).status).toBe(200);
  });

  it('a retried update that was refused is taken once its wait is over (a new window)', async () => {
    // The refusal wrote nothing and moved no counter: a retry of the very same update is
    // refused again while the limit holds, not answered as a duplicate.
    await expectRefused(() => postTelegram('adm-peer', 2, 7001), 429, 'TOO_MANY_MESSAGES');
    await pipeline.ctx.redis.del(admissionKeys.rate(prefix, 's:adm-peer:tg:7001'));
    const res = await postTelegram('adm-peer', 2, 7001);
    expect(res.status).toBe(200);
  });

  it('absorbs a LINE message past a limit when redelivery is off: written, its run delayed', async () => {
    expect((await postLine('adm-line', 'U1')).status).toBe(200);
    const res = await postLine('adm-line', 'U1');
    expect(res.status).toBe(200);
    const { runs } = (await res.json()) as { runs: string[] };
    expect(runs).toHaveLength(1);
    const job = await pipeline.queues.queues.resolve.getJob(stageJobId('resolve', runs[0]!, false));
    expect(await job?.getState()).toBe('delayed');
    expect(job?.opts.delay).toBeGreaterThan(30_000);
  });

  it('refuses a LINE message past a limit when the account says redelivery is on', async () => {
    expect((await postLine('adm-line-rd', 'U2')).status).toBe(200);
    await expectRefused(() => postLine('adm-line-rd', 'U2'), 429, 'TOO_MANY_MESSAGES');
  });

  it('counts refusals and absorbed messages for /metrics', async () => {
    const counts = await pipeline.ctx.redis.hgetall(admissionKeys.refusals(prefix));
    expect(counts).toMatchObject({
      'adm-a|project_backlog': '1',
      'adm-b|platform_backlog': '1',
      'adm-line|absorbed': '1',
    });
    expect(Number(counts['adm-peer|rate'])).toBeGreaterThanOrEqual(2);
  });
});

describe('what each channel gets past a limit', () => {
  const request = (headers: Record<string, string>) => ({
    projectId: 'p',
    accountId: 'a',
    headers,
    rawBody: () => Promise.resolve(Buffer.alloc(0)),
    receivedAt: new Date(),
  });

  it("refuses Slack's first tries and absorbs its last retry (X-Slack-Retry-Num 3)", () => {
    const account = { type: 'slack' } as never;
    expect(slackPlugin.inbound?.overload?.(account, request({}))).toBe('refuse');
    expect(slackPlugin.inbound?.overload?.(account, request({ 'x-slack-retry-num': '2' }))).toBe(
      'refuse',
    );
    expect(slackPlugin.inbound?.overload?.(account, request({ 'x-slack-retry-num': '3' }))).toBe(
      'absorb',
    );
  });

  it('absorbs on the Discord Gateway, which replays nothing, and refuses on SMTP (a 4xx is retried)', () => {
    expect(discordPlugin.connection?.overload).toBe('absorb');
    expect(emailPlugin.connection?.overload ?? 'refuse').toBe('refuse');
    expect(telegramPlugin.inbound !== undefined && 'overload' in telegramPlugin.inbound).toBe(
      false,
    );
  });
});
