import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rollbackContract } from '../../db/contractRevisions.ts';
import { loginUrl } from '../../db/loginUrl.ts';
import { withProject } from '../../db/withProject.ts';
import { applyTestTenant, pipelineTenant, TEST_SECRETS } from '../../ops/fakes/pipelineTenant.ts';
import { startTelegramServer, type TelegramServer } from '../../ops/fakes/telegramServer.ts';
import { renderMetrics } from '../../ops/metrics/renderMetrics.ts';
import { startChannels, type ChannelsLoop } from '../../ops/startChannels.ts';
import { wireChannelManager } from '../../ops/wireChannelManager.ts';
import { BUILTIN_CHANNEL_PLUGINS } from '../../pipeline/channels/builtinChannelPlugins.ts';
import type { ChannelManager } from '../../pipeline/channelManager/createChannelManager.ts';
import type { ChannelAccountView } from '../../pipeline/channelManager/describeChannelAccounts.ts';
import { ChannelContract } from '../../pipeline/contracts/channelContract.ts';
import { stageJobId } from '../../pipeline/contracts/runState.ts';
import { createMemoryChannel, memorySignature } from '../fakes/memoryChannel.ts';
import { runCli } from '../helpers/runCli.ts';
import { startPipeline, type Pipeline } from '../helpers/startPipeline.ts';
import { tableCounts } from '../helpers/tableCounts.ts';
import { useTestDatabase } from '../helpers/testDatabase.ts';
import { TEST_REDIS_URL, useRedisPrefix } from '../helpers/useRedisPrefix.ts';
import { waitFor } from '../helpers/waitFor.ts';

// The ChannelManager against the real Postgres and Redis: the toy channel's connection
// adapter stands in for a held connection (Discord's Gateway), the fake Telegram server for
// a webhook account that asks to be registered.
const db = useTestDatabase();
const prefix = useRedisPrefix();
const PROJECT = 'chanmgr';
const MEM = 'mem';
const SIGNING = 'memory-signing-secret';
const PUBLIC_URL = 'https://hooks.example.test';
const ADMIN_TOKEN = 'admin-token-for-the-channel-manager-test';

const memory = createMemoryChannel();
const BUILTINS_BUT_SLACK = BUILTIN_CHANNEL_PLUGINS.filter((p) => p.type !== 'slack');
let pipeline: Pipeline;
let telegram: TelegramServer;
let owner: pg.Client;
let manager: ChannelManager;
let loop: ChannelsLoop;
let operatorKey: string;

function tenant(memChunk?: number) {
  const t = pipelineTenant({
    projectId: PROJECT,
    telegramApiRoot: telegram.apiRoot,
    lineBaseUrl: 'http://127.0.0.1:9',
  });
  t.tenant.channels[MEM] = ChannelContract.parse({
    type: 'slack',
    signingSecret: 'secret:mem-signing',
    botToken: 'secret:mem-token',
    ...(memChunk ? { formatting: { maxChunkChars: memChunk } } : {}),
  });
  t.tenant.channels.tg = ChannelContract.parse({
    ...t.tenant.channels.tg,
    webhook: { register: true, publicUrl: PUBLIC_URL },
  });
  return t;
}

beforeAll(async () => {
  telegram = await startTelegramServer();
  pipeline = await startPipeline({
    pool: db().pool,
    sweeperPool: db().sweeperPool,
    prefix,
    channels: [...BUILTINS_BUT_SLACK, memory.plugin],
    app: {
      adminToken: ADMIN_TOKEN,
      metrics: () =>
        renderMetrics({
          pool: db().sweeperPool,
          redis: pipeline.ctx.redis,
          prefix,
          queues: pipeline.queues.queues,
        }),
    },
  });
  owner = await db().owner();
  await applyTestTenant({ pool: db().pool, logger: pipeline.ctx.logger }, tenant());
  for (const [name, value] of Object.entries(TEST_SECRETS))
    await pipeline.setSecret(PROJECT, name, value);
  await pipeline.setSecret(PROJECT, 'mem-signing', SIGNING);
  await pipeline.setSecret(PROJECT, 'mem-token', 'token-1');
  operatorKey = await pipeline.createKey(PROJECT, ['operator']);
  // The channels process as `awooop channels` runs it, on the sweeper's login; its poll is
  // long, so what happens promptly below happens by notification.
  manager = wireChannelManager(
    { ...pipeline.ctx, pool: db().sweeperPool, actor: 'channels' },
    { enqueue: pipeline.queues.enqueue, deliver: pipeline.queues.queues.deliver },
  );
  loop = await startChannels({
    manager,
    listenUrl: loginUrl(db().url, 'sweeper'),
    intervalMs: 600_000,
    logger: pipeline.ctx.logger,
  });
});

afterAll(async () => {
  await loop?.close();
  await pipeline?.close();
  await telegram?.close();
});

const api = (path: string, init: RequestInit = {}, key = operatorKey) =>
  fetch(`${pipeline.url}/v1/projects/${PROJECT}${path}`, {
    ...init,
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
  });

async function accounts(history = 50): Promise<ChannelAccountView[]> {
  const res = await api(`/channels?history=${history}`);
  expect(res.status).toBe(200);
  return ((await res.json()) as { channels: ChannelAccountView[] }).channels;
}
const account = async (id: string) => (await accounts()).find((a) => a.account === id)!;
const waitState = (id: string, state: string) =>
  waitFor(async () => (await account(id)).state === state, { what: `${id} ${state}` });

function postWebhook(body: object) {
  const raw = JSON.stringify(body);
  return fetch(`${pipeline.url}/webhooks/slack/${PROJECT}/${MEM}`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'x-memory-signature': memorySignature(raw, SIGNING),
    },
    body: raw,
  });
}

const openConnections = () => memory.connections.filter((c) => c.accountId === MEM && c.open);

async function runState(runId: string) {
  const r = await owner.query<{ state: string }>('SELECT state FROM runs WHERE run_id = $1', [
    runId,
  ]);
  return r.rows[0]?.state;
}

describe('the ChannelManager', () => {
  it('makes a snapshot of every account and holds one connection per connection account', async () => {
    await waitState(MEM, 'running');
    await waitState('tg', 'running');
    await waitState('ln', 'running');
    expect(openConnections()).toHaveLength(1);
    expect(openConnections()[0]).toMatchObject({ projectId: PROJECT, token: 'token-1' });
    const mem = await account(MEM);
    expect(mem).toMatchObject({ channel: 'slack', desired: 'running', contractActive: true });
    expect(mem.revision?.version).toBe(1);
  });

  it('registers the Telegram webhook with its URL and secret token when the account asks', async () => {
    const url = `${PUBLIC_URL}/webhooks/telegram/${PROJECT}/tg`;
    await waitFor(() => telegram.webhooks.length > 0);
    expect(telegram.webhooks).toEqual([
      { token: TEST_SECRETS['tg-token'], url, secret_token: TEST_SECRETS['tg-webhook'] },
    ]);
    expect((await account('tg')).registeredUrl).toBe(url);
    // the LINE account did not ask for anything, and nothing was asked of Telegram for it
    expect((await account('ln')).registeredUrl).toBeNull();
  });

  it('refuses a webhook setting that is not an https base URL, naming the field', () => {
    const base = { type: 'telegram', botToken: 'secret:a', webhookSecret: 'secret:b' };
    for (const publicUrl of ['http://hooks.example.test', 'https://hooks.example.test/path']) {
      const parsed = ChannelContract.safeParse({ ...base, webhook: { register: true, publicUrl } });
      expect(parsed.success).toBe(false);
      expect(new Set(parsed.error?.issues.map((i) => i.path.join('.')))).toEqual(
        new Set(['webhook.publicUrl']),
      );
    }
    const stray = ChannelContract.safeParse({
      ...base,
      webhook: { register: true, publicUrl: PUBLIC_URL, path: '/x' },
    });
    expect(stray.error?.issues.map((i) => i.path.join('.'))).toEqual(['webhook']);
  });

  it('makes one run of a message from the held connection, answered once, and none of a replay', async () => {
    const first = await memory.push(MEM, {
      id: 'c-1',
      from: 'u1',
      chat: 'chat-1',
      text: 'over the connection',
    });
    expect(first.runs).toHaveLength(1);
    const replay = await memory.push(MEM, {
      id: 'c-1',
      from: 'u1',
      chat: 'chat-1',
      text: 'over the connection',
    });
    expect(replay).toEqual({ runs: first.runs, duplicate: true });
    await waitFor(async () => (await runState(first.runs[0]!)) === 'COMPLETED');
    expect(memory.outbox.filter((m) => m.to === 'chat-1')).toHaveLength(1);
    // The counts reach Redis as the messages pass, and the snapshot once flushed.
    const mem = await waitFor(async () => {
      await manager.flush();
      const a = await account(MEM);
      return a.counts.inbound === 1 && a.counts.outbound === 1 && a;
    });
    expect(mem.counts.errors).toBe(0);
    expect(mem.lastInboundAt).not.toBeNull();
    expect(mem.lastOutboundAt).not.toBeNull();
  });

  it('stops intake and sends of a stopped account (webhook 503, rows wait, no timeout) and sends them once when started', async () => {
    // The answer is made but not yet sent when the account stops.
    await pipeline.stopWorkers();
    pipeline.startWorkers(['resolve', 'policy', 'execute', 'sanitize']);
    const { runs } = await memory.push(MEM, {
      id: 'c-wait',
      from: 'u2',
      chat: 'chat-wait',
      text: 'wait for me',
    });
    const runId = runs[0]!;
    await waitFor(async () => (await runState(runId)) === 'SANITIZED');

    const stop = await api(`/channels/${MEM}/stop`, { method: 'POST' });
    expect(stop.status).toBe(200);
    expect(((await stop.json()) as { changed: boolean }).changed).toBe(true);
    await waitState(MEM, 'stopped');
    expect(openConnections()).toHaveLength(0);
    await expect(
      memory.push(MEM, { id: 'c-x', from: 'u', chat: 'c', text: 'x' }),
    ).rejects.toThrow();

    // Intake: 503 with Retry-After, nothing written.
    const before = await tableCounts(owner);
    const refused = await postWebhook({ id: 'w-stopped', from: 'u3', chat: 'chat-3', text: 'hi' });
    expect(refused.status).toBe(503);
    expect(refused.headers.get('retry-after')).toBe('60');
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe(
      'CHANNEL_ACCOUNT_STOPPED',
    );
    expect(await tableCounts(owner)).toEqual(before);

    // Sends: the deliver job waits (delayed, no attempt spent), its row stays queued.
    pipeline.startWorkers(['deliver']);
    const job = await waitFor(async () => {
      const j = await pipeline.queues.queues.deliver.getJob(stageJobId('deliver', runId, false));
      return j && (await j.isDelayed()) && j;
    });
    expect(job.attemptsMade).toBe(0);
    const row = async () =>
      (
        await owner.query<{ status: string; attempts: number }>(
          "SELECT status, attempts FROM outbound_messages WHERE run_id = $1 AND kind = 'reply'",
          [runId],
        )
      ).rows;
    expect(await row()).toEqual([{ status: 'queued', attempts: 0 }]);
    // Past its deadline, the run is still not timed out: the wait is the operator's.
    await owner.query(
      "UPDATE runs SET deadline_at = now() - interval '1 second' WHERE run_id = $1",
      [runId],
    );
    const swept = await pipeline.sweep(0);
    expect(swept.timedOut).toBe(0);
    expect(await runState(runId)).toBe('SANITIZED');
    expect(memory.outbox.filter((m) => m.to === 'chat-wait')).toHaveLength(0);

    const start = await api(`/channels/${MEM}/start`, { method: 'POST' });
    expect(start.status).toBe(200);
    await waitFor(async () => (await runState(runId)) === 'COMPLETED', {
      what: 'the resumed send',
    });
    expect(await row()).toEqual([{ status: 'sent', attempts: 1 }]);
    expect(memory.outbox.filter((m) => m.to === 'chat-wait')).toHaveLength(1);
    await waitState(MEM, 'running');
    expect(openConnections()).toHaveLength(1);
    // the webhook takes messages again
    const after = await postWebhook({ id: 'w-after', from: 'u3', chat: 'chat-3', text: 'hi' });
    expect(after.status).toBe(200);
    const [afterRun] = ((await after.json()) as { runs: string[] }).runs;
    await waitFor(async () => (await runState(afterRun!)) === 'COMPLETED');
  });

  it('answers a repeated stop or start with no change, an unknown account 404 and a bad body 400', async () => {
    const again = await api(`/channels/${MEM}/start`, { method: 'POST' });
    expect(((await again.json()) as { changed: boolean }).changed).toBe(false);
    const client = await pipeline.createKey(PROJECT, ['client']);
    const before = await tableCounts(owner);
    const unknown = await api('/channels/nope/stop', { method: 'POST' });
    expect(unknown.status).toBe(404);
    expect(((await unknown.json()) as { error: { code: string } }).error.code).toBe(
      'ACCOUNT_NOT_FOUND',
    );
    const bad = await api(`/channels/${MEM}/stop`, { method: 'POST', body: '{"force":true}' });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { message: string } }).error.message).toMatch(/force/);
    expect((await api(`/channels/${MEM}/stop`, { method: 'POST' }, client)).status).toBe(403);
    expect((await api('/channels?history=x')).status).toBe(400);
    expect(await tableCounts(owner)).toEqual(before);
    expect((await account(MEM)).desired).toBe('running');
  });

  it('keeps its connections open when its listening connection is cut, and takes the lock again', async () => {
    // Regression: a cut listener closed every held connection until the next tick opened them
    // anew, and a Discord account lost what its Gateway sent in between (a new session
    // replays nothing).
    const listener = () =>
      owner.query<{ pid: number; locked: boolean }>(
        `SELECT a.pid, EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = a.pid AND l.locktype = 'advisory'
                 AND l.granted) AS locked
           FROM pg_stat_activity a
          WHERE a.application_name = 'awooop-channels' AND a.datname = current_database()`,
      );
    const before = (await listener()).rows;
    expect(before).toHaveLength(1);
    expect(before[0]!.locked).toBe(true);
    const opened = memory.connections.length;
    await owner.query('SELECT pg_terminate_backend($1)', [before[0]!.pid]);
    const after = await waitFor(
      async () => {
        const { rows } = await listener();
        return rows.length === 1 && rows[0]!.pid !== before[0]!.pid && rows[0]!.locked && rows;
      },
      { what: 'a new listener holding the lock' },
    );
    expect(after).toHaveLength(1);
    expect(loop.leading()).toBe(true);
    expect(memory.connections.length).toBe(opened);
    expect(openConnections()).toHaveLength(1);
    const pushed = await memory.push(MEM, {
      id: 'c-cut',
      from: 'u1',
      chat: 'chat-cut',
      text: 'hi',
    });
    expect(pushed.runs).toHaveLength(1);
  });

  it('switches the held connection when a contract revision is activated or rolled back, without a restart', async () => {
    const opened = memory.connections.length;
    await applyTestTenant({ pool: db().pool, logger: pipeline.ctx.logger }, tenant(300));
    await waitFor(() => openConnections()[0]?.account.formatting.maxChunkChars === 300, {
      what: 'the connection of revision 2',
    });
    expect(memory.connections.length).toBe(opened + 1);
    expect(openConnections()).toHaveLength(1);
    expect((await account(MEM)).revision?.version).toBe(2);

    await withProject(db().pool, PROJECT, (tx) =>
      rollbackContract(tx, { projectId: PROJECT, kind: 'channel', name: MEM, actor: 'test' }),
    );
    await waitFor(
      () => {
        const [open] = openConnections();
        return open !== undefined && open.account.formatting.maxChunkChars === undefined;
      },
      {
        what: 'the connection of revision 1 again',
      },
    );
    expect(memory.connections.length).toBe(opened + 2);
    expect(openConnections()).toHaveLength(1);
    expect(loop.leading()).toBe(true);
    await waitFor(async () => (await account(MEM)).revision?.version === 1);
  });

  it('restarts one account: its connection reopened, its webhook registered again', async () => {
    const opened = memory.connections.length;
    const registered = telegram.webhooks.length;
    expect((await api(`/channels/${MEM}/restart`, { method: 'POST' })).status).toBe(200);
    expect((await api('/channels/tg/restart', { method: 'POST' })).status).toBe(200);
    await waitFor(() => memory.connections.length === opened + 1 && openConnections().length === 1);
    await waitFor(() => telegram.webhooks.length === registered + 1);
  });

  it('shows each state change in the snapshot history', async () => {
    await waitState(MEM, 'running');
    const mem = await account(MEM);
    const changes = mem.history.map((h) => `${h.kind}:${h.from ?? '-'}>${h.to}:${h.reason}`);
    expect(changes).toEqual([
      'actual:stopped>starting:started',
      'actual:starting>running:reported by the connection',
      'desired:running>stopped:stop requested',
      'actual:running>stopped:stop requested',
      'desired:stopped>running:start requested',
      'actual:stopped>starting:started',
      'actual:starting>running:reported by the connection',
      'actual:running>starting:contract revision 2',
      'actual:starting>running:reported by the connection',
      'actual:running>starting:contract revision 1',
      'actual:starting>running:reported by the connection',
      'restart:->running:restart requested',
      'actual:running>starting:restart requested',
      'actual:starting>running:reported by the connection',
    ]);
    expect(mem.history.find((h) => h.kind === 'desired')?.actor).toMatch(/^api:/);
  });

  it('stops an account whose contract is gone', async () => {
    await owner.query(
      "DELETE FROM contract_active WHERE project_id = $1 AND kind = 'channel' AND name = 'ln'",
      [PROJECT],
    );
    await waitFor(async () => {
      const ln = await account('ln');
      return ln.state === 'stopped' && !ln.contractActive;
    });
    expect((await account('ln')).history.at(-1)).toMatchObject({
      from: 'running',
      to: 'stopped',
      reason: 'contract gone',
    });
  });

  it('serves per-account series on /metrics', async () => {
    await manager.flush();
    const res = await fetch(`${pipeline.url}/metrics`, {
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    });
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text).toContain(
      `awooop_channel_account_state{project="${PROJECT}",account="${MEM}",channel="slack",state="running"} 1`,
    );
    expect(text).toContain(
      `awooop_channel_account_state{project="${PROJECT}",account="${MEM}",channel="slack",state="stopped"} 0`,
    );
    expect(text).toContain(
      `awooop_channel_account_stopped{project="${PROJECT}",account="${MEM}"} 0`,
    );
    expect(text).toMatch(
      new RegExp(`awooop_channel_inbound_total\\{project="${PROJECT}",account="${MEM}"\\} [1-9]`),
    );
    expect(text).toMatch(
      new RegExp(`awooop_channel_outbound_total\\{project="${PROJECT}",account="${MEM}"\\} [1-9]`),
    );
  });

  it('shows, stops and starts accounts from the CLI', async () => {
    const env = { DATABASE_URL: db().url, REDIS_URL: TEST_REDIS_URL, AWOOOP_REDIS_PREFIX: prefix };
    const status = await runCli(['channels', 'status', '--project', PROJECT], env);
    expect(status.code).toBe(0);
    expect(status.stdout).toMatch(new RegExp(`^${MEM}  slack  running +desired running`, 'm'));
    expect(status.stdout).toMatch(/^tg {2}telegram {2}running/m);

    const stop = await runCli(['channels', 'stop', '--project', PROJECT, '--account', 'tg'], env);
    expect(stop.code).toBe(0);
    expect(stop.stdout).toContain('stop requested for tg');
    await waitState('tg', 'stopped');
    const json = await runCli(
      ['channels', 'status', '--project', PROJECT, '--account', 'tg', '--json'],
      env,
    );
    const [tg] = JSON.parse(json.stdout) as ChannelAccountView[];
    expect(tg).toMatchObject({ account: 'tg', desired: 'stopped', state: 'stopped' });
    expect(tg!.history.at(-2)).toMatchObject({
      kind: 'desired',
      to: 'stopped',
      actor: expect.stringMatching(/^cli:/),
    });

    const start = await runCli(['channels', 'start', '--project', PROJECT, '--account', 'tg'], env);
    expect(start.code).toBe(0);
    await waitState('tg', 'running');

    const missing = await runCli(['channels', 'stop', '--project', PROJECT], env);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('--account');
    const unknown = await runCli(
      ['channels', 'stop', '--project', PROJECT, '--account', 'nope'],
      env,
    );
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('ACCOUNT_NOT_FOUND');
  });
});
