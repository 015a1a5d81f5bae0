import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { acceptInbound } from '../../ingress/acceptInbound.ts';
import type { ConnectionSink, HeldConnection } from '../../pipeline/channels/ChannelPlugin.ts';
import type { InboundBatch } from '../../pipeline/channels/inboundTypes.ts';
import { discordPlugin } from '../../pipeline/channels/discord/discordPlugin.ts';
import { ChannelContract } from '../../pipeline/contracts/channelContract.ts';
import type { MigrationMode } from '../../pipeline/contracts/common.ts';
import { applyTestTenant, pipelineTenant } from '../../ops/fakes/pipelineTenant.ts';
import {
  DISCORD_APP_ID,
  DISCORD_BOT_USER,
  DISCORD_GUILD,
  discordHeaders,
  discordKeyPair,
  interactionPing,
  messageCreate,
} from '../../ops/fakes/discordPayloads.ts';
import { startDiscordGateway, type FakeDiscordGateway } from '../../ops/fakes/discordGateway.ts';
import {
  snowflake,
  startDiscordRestServer,
  type DiscordRestServer,
} from '../../ops/fakes/discordRestServer.ts';
import { startPipeline, type Pipeline } from '../helpers/startPipeline.ts';
import { tableCounts } from '../helpers/tableCounts.ts';
import { useTestDatabase } from '../helpers/testDatabase.ts';
import { useRedisPrefix } from '../helpers/useRedisPrefix.ts';
import { waitFor } from '../helpers/waitFor.ts';

// Discord end to end: MESSAGE_CREATE dispatches from a fake Gateway through the plugin's
// connection (opened here, as the ChannelManager opens it) into the durable accept, the five
// stages, and answers posted through the real @discordjs/rest client into a fake REST API;
// signed interactions into ingress.
const db = useTestDatabase();
const prefix = useRedisPrefix();
const PROJECT = 'discordco';
const SHADOW = 'discordshadow';
const TOKEN = 'MTEwMDAwMDAwMDAwMDAwMDAwMQ.GhZxyz.discord-e2e-bot-token-abcdefghij';
const keys = discordKeyPair();

let rest: DiscordRestServer;
let gateway: FakeDiscordGateway;
let shadowGateway: FakeDiscordGateway;
let pipeline: Pipeline;
let owner: pg.Client;
const held: HeldConnection[] = [];
/** While set, the sink waits for it before the durable write (a slow commit). */
let gate: Promise<void> | null = null;
const sinkCalls: InboundBatch[] = [];

function account(gatewayUrl: string) {
  return ChannelContract.parse({
    type: 'discord',
    botToken: 'secret:discord-bot',
    applicationId: DISCORD_APP_ID,
    publicKey: keys.publicKey,
    apiBaseUrl: rest.apiBaseUrl,
    gatewayUrl,
  }) as Extract<ChannelContract, { type: 'discord' }>;
}

/** The sink the ChannelManager wires: the same durable accept a webhook route uses. */
function sinkFor(projectId: string): ConnectionSink {
  return {
    async messages(batch) {
      sinkCalls.push(batch);
      if (gate) await gate;
      const accepted = await acceptInbound(
        {
          pool: db().pool,
          enqueue: pipeline.queues.enqueue,
          logger: pipeline.ctx.logger,
          secrets: pipeline.ctx.secrets,
          redis: pipeline.ctx.redis,
          redisPrefix: pipeline.ctx.redisPrefix,
        },
        {
          projectId,
          channel: 'discord',
          accountId: 'dc',
          traceId: randomBytes(16).toString('hex'),
        },
        batch.events,
      );
      return { runs: accepted.map((a) => a.runId), duplicate: accepted.some((a) => !a.created) };
    },
    async approval() {},
    state() {},
  };
}

async function setUpProject(projectId: string, mode: MigrationMode, gatewayUrl: string) {
  const input = pipelineTenant({
    projectId,
    telegramApiRoot: 'http://127.0.0.1:9/',
    lineBaseUrl: 'http://127.0.0.1:9',
    mode,
  });
  input.tenant.channels.dc = account(gatewayUrl);
  await applyTestTenant({ pool: db().pool, logger: pipeline.ctx.logger }, input);
  await pipeline.setSecret(projectId, 'discord-bot', TOKEN);
  const connection = await discordPlugin.connection!.open(
    account(gatewayUrl),
    [TOKEN],
    sinkFor(projectId),
    { projectId, accountId: 'dc' },
  );
  held.push(connection);
}

beforeAll(async () => {
  rest = await startDiscordRestServer({ token: TOKEN });
  // GET /gateway/bot names nothing reachable: the accounts' gatewayUrl is what is used.
  rest.setGatewayUrl('ws://127.0.0.1:9');
  gateway = await startDiscordGateway({ token: TOKEN });
  shadowGateway = await startDiscordGateway({ token: TOKEN });
  pipeline = await startPipeline({ pool: db().pool, prefix });
  owner = await db().owner();
  await setUpProject(PROJECT, 'read_only', gateway.url);
  await setUpProject(SHADOW, 'shadow', shadowGateway.url);
  await waitFor(() => gateway.ready() && shadowGateway.ready(), { what: 'both sessions READY' });
});

afterAll(async () => {
  await Promise.all(held.map((h) => h.stop()));
  await pipeline?.close();
  await Promise.all([gateway?.close(), shadowGateway?.close(), rest?.close()]);
});

type RunRow = { run_id: string; state: string };
async function runsOf(messageId: string): Promise<RunRow[]> {
  const { rows } = await owner.query<RunRow>(
    `SELECT r.run_id, r.state FROM runs r JOIN conversation_events e ON e.event_id = r.event_id
      WHERE e.channel = 'discord' AND e.external_event_id = $1`,
    [messageId],
  );
  return rows;
}
const finished = (messageId: string) =>
  waitFor(
    async () => {
      const [run] = await runsOf(messageId);
      return run && (run.state === 'COMPLETED' || run.state === 'FAILED') ? run : undefined;
    },
    { what: `the run of message ${messageId} to finish` },
  );
async function ledger(runId: string) {
  const { rows } = await owner.query<{ kind: string; status: string; format: string }>(
    'SELECT kind, status, format FROM outbound_messages WHERE run_id = $1 ORDER BY kind, chunk_index',
    [runId],
  );
  return rows;
}
const postsIn = (channelId: string) => rest.posts.filter((p) => p.channelId === channelId);
/** A guild message mentioning the bot, in a channel of its own so its answers can be told apart. */
function mention(text: string, channelId = snowflake()) {
  return messageCreate({
    guildId: DISCORD_GUILD,
    channelId,
    content: `<@${DISCORD_BOT_USER}> ${text}`,
    mentions: [DISCORD_BOT_USER],
  });
}
/** Lets any stray second delivery show before posts are counted. */
const settle = () => new Promise((r) => setTimeout(r, 500));

describe('Discord messages over the Gateway', () => {
  it('answers a mention once, as a reply in its channel, Discord markdown escaped', async () => {
    const d = mention('is **prod** ok? @everyone');
    gateway.dispatch('MESSAGE_CREATE', d);
    const run = await finished(String(d.id));
    expect(run.state).toBe('COMPLETED');
    await settle();
    const posts = postsIn(String(d.channel_id));
    expect(posts).toHaveLength(1);
    expect(posts[0]!.body).toMatchObject({
      content: 'echo: is \\*\\*prod\\*\\* ok? \\@everyone',
      message_reference: { message_id: d.id },
      allowed_mentions: { parse: [] },
      enforce_nonce: true,
    });
    expect(posts[0]!.token).toBe(TOKEN);
    // The typing indicator went up in the same channel while the run executed.
    expect(rest.typing).toContain(String(d.channel_id));
    expect(await ledger(run.run_id)).toEqual([
      { kind: 'reply', status: 'sent', format: 'discord' },
    ]);
  });

  it('answers a DM, and makes no run for a bot, its own message or an unmentioned one', async () => {
    const dm = messageCreate({ content: 'hello in private', channelId: snowflake() });
    const others = [
      messageCreate({ content: 'x', author: { id: '1400000000000000099', bot: true } }),
      messageCreate({ content: 'x', author: { id: DISCORD_BOT_USER } }),
      messageCreate({ content: 'not for the bot', guildId: DISCORD_GUILD }),
    ];
    const counts = await tableCounts(owner);
    for (const d of others) gateway.dispatch('MESSAGE_CREATE', d);
    gateway.dispatch('MESSAGE_CREATE', dm);
    await finished(String(dm.id));
    for (const d of others) expect(await runsOf(String(d.id))).toEqual([]);
    const after = await tableCounts(owner);
    expect(after.conversation_events).toBe(counts.conversation_events! + 1);
    expect(postsIn(String(dm.channel_id)).map((p) => p.body.content)).toEqual([
      'echo: hello in private',
    ]);
  });

  it('makes one run and one answer of five copies of a message id, concurrent ones among them', async () => {
    const d = mention('five');
    for (let i = 0; i < 5; i += 1) gateway.dispatch('MESSAGE_CREATE', d);
    const sink = sinkFor(PROJECT);
    const event = {
      externalEventId: String(d.id),
      sender: { id: '1400000000000000001', isBot: false },
      conversation: { kind: 'group' as const, id: String(d.channel_id) },
      message: { text: 'five' },
    };
    const answers = await Promise.all(
      [0, 1, 2, 3, 4].map(() => sink.messages({ events: [event], ignored: 0 })),
    );
    expect(new Set(answers.flatMap((a) => a.runs)).size).toBe(1);
    await finished(String(d.id));
    expect(await runsOf(String(d.id))).toHaveLength(1);
    await settle();
    expect(postsIn(String(d.channel_id))).toHaveLength(1);
  });

  it('resumes a dropped connection from before the message not yet durable, and its replay makes no second run', async () => {
    const d = mention('during the drop');
    const id = String(d.id);
    let release!: () => void;
    gate = new Promise<void>((r) => (release = r));
    const resumesBefore = gateway.received.filter((r) => r.op === 'resume').length;
    let seq: number;
    try {
      seq = gateway.dispatch('MESSAGE_CREATE', d);
      await waitFor(() => sinkCalls.some((b) => b.events[0]?.externalEventId === id), {
        what: 'the message at the sink',
      });
      gateway.drop();
      const resume = await waitFor(
        () => gateway.received.filter((r) => r.op === 'resume')[resumesBefore],
        { what: 'a RESUME' },
      );
      const identify = gateway.received.filter((r) => r.op === 'identify').at(-1);
      expect(identify).toBeDefined();
      // The session READY gave, and the sequence before the message still being written.
      expect(resume).toMatchObject({ op: 'resume', token: TOKEN, seq: seq - 1 });
      expect((resume as { sessionId: string }).sessionId).toMatch(/^[0-9a-f]{32}$/);
      await waitFor(() => gateway.ready(), { what: 'RESUMED' });
    } finally {
      gate = null;
      release();
    }
    await finished(id);
    // The original and Discord's replay both reached the sink; one run, one answer.
    await waitFor(() => sinkCalls.filter((b) => b.events[0]?.externalEventId === id).length === 2, {
      what: 'the replayed dispatch at the sink',
    });
    await settle();
    expect(await runsOf(id)).toHaveLength(1);
    expect(postsIn(String(d.channel_id))).toHaveLength(1);
  });

  it('takes a message sent while the connection was down, replayed on RESUME', async () => {
    const resumesBefore = gateway.received.filter((r) => r.op === 'resume').length;
    gateway.drop();
    const d = mention('while away');
    gateway.dispatch('MESSAGE_CREATE', d);
    await waitFor(() => gateway.received.filter((r) => r.op === 'resume').length > resumesBefore, {
      what: 'a RESUME',
    });
    await finished(String(d.id));
    await settle();
    expect(postsIn(String(d.channel_id))).toHaveLength(1);
  });

  it("waits out a 429's retry_after and still sends the answer once", async () => {
    const d = mention('limited');
    const before = rest.requests.length;
    rest.failNext(1, { kind: 'rate_limited', retryAfter: 1 });
    gateway.dispatch('MESSAGE_CREATE', d);
    const run = await finished(String(d.id));
    expect(run.state).toBe('COMPLETED');
    await settle();
    expect(postsIn(String(d.channel_id))).toHaveLength(1);
    const calls = rest.requests
      .slice(before)
      .filter((r) => r.path === `/api/v10/channels/${String(d.channel_id)}/messages`);
    expect(calls.map((c) => c.status)).toEqual([429, 200]);
    expect(await ledger(run.run_id)).toEqual([
      { kind: 'reply', status: 'sent', format: 'discord' },
    ]);
  });

  it('sends nothing in shadow mode: the answer is recorded suppressed', async () => {
    const d = mention('quiet');
    shadowGateway.dispatch('MESSAGE_CREATE', d);
    const run = await finished(String(d.id));
    expect(run.state).toBe('COMPLETED');
    await settle();
    expect(postsIn(String(d.channel_id))).toHaveLength(0);
    expect(await ledger(run.run_id)).toEqual([
      { kind: 'reply', status: 'suppressed', format: 'discord' },
    ]);
  });
});

describe('the Discord Interactions endpoint', () => {
  const post = (body: string, headers: Record<string, string>) =>
    fetch(`${pipeline.url}/webhooks/discord/${PROJECT}/dc`, { method: 'POST', headers, body });

  /** Runs `act` and checks that no table row and no queued job came of it. */
  async function expectNothingWritten<T>(act: () => Promise<T>): Promise<T> {
    const counts = await tableCounts(owner);
    const jobs = await pipeline.queues.queues.resolve.getJobCounts();
    const result = await act();
    expect(await tableCounts(owner)).toEqual(counts);
    expect(await pipeline.queues.queues.resolve.getJobCounts()).toEqual(jobs);
    return result;
  }

  it('answers a PING with a PONG and writes nothing', async () => {
    const body = JSON.stringify(interactionPing());
    const res = await expectNothingWritten(() => post(body, discordHeaders(body, keys.privateKey)));
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ type: 1 });
  });

  it('refuses a bad signature with 401 and writes nothing', async () => {
    const body = JSON.stringify(interactionPing());
    for (const headers of [
      discordHeaders(body, discordKeyPair().privateKey),
      discordHeaders(`${body} `, keys.privateKey),
      { 'content-type': 'application/json' },
    ]) {
      const res = await expectNothingWritten(() => post(body, headers));
      expect(res.status).toBe(401);
      expect(await res.json()).toMatchObject({ error: { code: 'SIGNATURE_INVALID' } });
    }
  });

  it('refuses a correctly signed request older than five minutes with 401 and writes nothing', async () => {
    const body = JSON.stringify(interactionPing());
    const stale = Math.floor(Date.now() / 1000) - 6 * 60;
    const res = await expectNothingWritten(() =>
      post(body, discordHeaders(body, keys.privateKey, stale)),
    );
    expect(res.status).toBe(401);
  });

  it('refuses an interaction for another application with 400 naming the field', async () => {
    const body = JSON.stringify(interactionPing('1999999999999999999'));
    const res = await expectNothingWritten(() => post(body, discordHeaders(body, keys.privateKey)));
    expect(res.status).toBe(400);
    expect(JSON.stringify(await res.json())).toContain('application_id');
  });
});
