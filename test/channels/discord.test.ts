import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { ConnectionSink, HeldConnection } from '../../pipeline/channels/ChannelPlugin.ts';
import type { InboundBatch } from '../../pipeline/channels/inboundTypes.ts';
import { createDiscordSender } from '../../pipeline/channels/discord/createDiscordSender.ts';
import {
  DISCORD_NONCE_WINDOW_MS,
  discordPlugin,
} from '../../pipeline/channels/discord/discordPlugin.ts';
import { readDiscordInteraction } from '../../pipeline/channels/discord/discordInteractions.ts';
import { normalizeDiscordMessage } from '../../pipeline/channels/discord/normalizeDiscordMessage.ts';
import { verifyDiscordSignature } from '../../pipeline/channels/discord/verifyDiscordSignature.ts';
import { ChannelContract } from '../../pipeline/contracts/channelContract.ts';
import type { ClaimedRow } from '../../db/outboundMessages.ts';
import { NonRetryableError, RetryAfterError } from '../../pipeline/errors.ts';
import { formatForChannel } from '../../pipeline/sanitize/formatForChannel.ts';
import { freePort } from '../../ops/freePort.ts';
import {
  buttonPress,
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
  startDiscordRestServer,
  type DiscordRestServer,
} from '../../ops/fakes/discordRestServer.ts';
import { waitFor } from '../helpers/waitFor.ts';

const TOKEN = 'MTEwMDAwMDAwMDAwMDAwMDAwMQ.GhZxyz.discord-test-bot-token-0123456789';
const MEDIA = { maxAttachments: 2, maxBytes: 1000 };

describe('verifyDiscordSignature', () => {
  const { publicKey, privateKey } = discordKeyPair();
  const body = JSON.stringify(interactionPing());
  const now = Date.now();

  it('accepts a request signed by the public key, and refuses it with one byte changed', () => {
    const h = discordHeaders(body, privateKey, Math.floor(now / 1000));
    const headers = { signature: h['x-signature-ed25519'], timestamp: h['x-signature-timestamp'] };
    expect(verifyDiscordSignature(Buffer.from(body), publicKey, headers, now)).toBe(true);
    expect(verifyDiscordSignature(Buffer.from(`${body} `), publicKey, headers, now)).toBe(false);
    const other = discordKeyPair().publicKey;
    expect(verifyDiscordSignature(Buffer.from(body), other, headers, now)).toBe(false);
    // The timestamp is signed too: the same signature under another timestamp is refused.
    const moved = { ...headers, timestamp: String(Number(headers.timestamp) + 1) };
    expect(verifyDiscordSignature(Buffer.from(body), publicKey, moved, now)).toBe(false);
  });

  it('refuses a correctly signed request more than five minutes old or ahead', () => {
    for (const [offset, ok] of [
      [-299, true],
      [-301, false],
      [301, false],
    ] as const) {
      const h = discordHeaders(body, privateKey, Math.floor(now / 1000) + offset);
      const headers = {
        signature: h['x-signature-ed25519'],
        timestamp: h['x-signature-timestamp'],
      };
      expect(verifyDiscordSignature(Buffer.from(body), publicKey, headers, now)).toBe(ok);
    }
  });

  it('refuses missing and malformed headers and keys', () => {
    const h = discordHeaders(body, privateKey, Math.floor(now / 1000));
    const raw = Buffer.from(body);
    const ts = h['x-signature-timestamp'];
    for (const signature of [undefined, '', 'zz', h['x-signature-ed25519']!.slice(2)]) {
      expect(verifyDiscordSignature(raw, publicKey, { signature, timestamp: ts }, now)).toBe(false);
    }
    const sig = h['x-signature-ed25519'];
    expect(verifyDiscordSignature(raw, publicKey, { signature: sig, timestamp: '1e9' }, now)).toBe(
      false,
    );
    expect(verifyDiscordSignature(raw, 'ab', { signature: sig, timestamp: ts }, now)).toBe(false);
  });
});

describe('normalizeDiscordMessage', () => {
  const read = (d: Record<string, unknown>) =>
    normalizeDiscordMessage(d, { botUserId: DISCORD_BOT_USER, media: MEDIA });

  it('reads a mention in a guild channel as a group message keyed by the message id', () => {
    const d = messageCreate({
      id: '1500000000000000001',
      guildId: DISCORD_GUILD,
      content: `<@${DISCORD_BOT_USER}> is the *build* green?`,
      mentions: [DISCORD_BOT_USER],
    });
    expect(read(d)).toEqual({
      externalEventId: '1500000000000000001',
      sender: { id: '1400000000000000001', displayName: 'nelly', isBot: false },
      conversation: { kind: 'group', id: '1200000000000000002' },
      message: { text: 'is the *build* green?', attachments: [] },
    });
  });

  it('reads a DM as a dm, with the <@!id> form of a mention taken out too', () => {
    const d = messageCreate({
      content: `hi <@!${DISCORD_BOT_USER}>`,
      channelId: '1300000000000000042',
    });
    expect(read(d)?.conversation).toEqual({ kind: 'dm', id: '1300000000000000042' });
    expect(read(d)?.message.text).toBe('hi');
  });

  it("ignores bots, the bot's own messages, webhooks, system messages and unmentioned guild ones", () => {
    const ignored = [
      messageCreate({ content: 'x', author: { id: '1400000000000000009', bot: true } }),
      messageCreate({ content: 'x', author: { id: DISCORD_BOT_USER } }),
      messageCreate({ content: 'x', extra: { webhook_id: '1' } }),
      messageCreate({ content: 'x', type: 7 }),
      messageCreate({ content: 'no mention', guildId: DISCORD_GUILD }),
      messageCreate({ content: '', attachments: [] }),
    ];
    for (const d of ignored) expect(read(d)).toBeNull();
    // Without the bot's id (no READY yet) no guild message can be told to mention it.
    const mention = messageCreate({
      content: 'x',
      guildId: DISCORD_GUILD,
      mentions: [DISCORD_BOT_USER],
    });
    expect(normalizeDiscordMessage(mention, { botUserId: undefined, media: MEDIA })).toBeNull();
  });

  it('keeps attachments as references under the caps, nothing fetched', () => {
    const d = messageCreate({
      content: 'see these',
      attachments: [
        { filename: 'a.png', size: 10, contentType: 'image/png' },
        { filename: 'big.mp4', size: 5000, contentType: 'video/mp4' },
        { filename: 'c.txt', size: 1 },
      ],
    });
    const attachments = read(d)!.message.attachments!;
    expect(attachments.map((a) => [a.kind, a.name, a.mimeType, a.sizeBytes, a.omitted])).toEqual([
      ['image', 'a.png', 'image/png', 10, undefined],
      ['video', 'big.mp4', 'video/mp4', 5000, 'too_large'],
      ['file', 'c.txt', undefined, 1, 'too_many'],
    ]);
    expect(attachments[0]!.ref).toMatch(
      /^https:\/\/cdn\.discordapp\.com\/attachments\/.+\/a\.png$/,
    );
  });

  it('refuses a dispatch that is no message, naming the field', () => {
    expect(() => read({ id: '1', author: {} })).toThrow(/channel_id|author/);
  });
});

describe('readDiscordInteraction', () => {
  const opts = { applicationId: DISCORD_APP_ID, approvals: true };
  const id = '0b7c9a52-1111-4222-8333-444455556666';

  it('answers a PING with a PONG', () => {
    expect(readDiscordInteraction(interactionPing(), opts)).toEqual({
      kind: 'answer',
      body: { type: 1 },
    });
  });

  it('reads an approval button as the presser deciding it, answered with a deferred update', () => {
    const press = buttonPress({ userId: '1400000000000000005', customId: `ap:${id}:y` });
    expect(readDiscordInteraction(press, opts)).toEqual({
      kind: 'approval',
      answer: {
        answerId: '1300000000000000077:1300000000000000078',
        decidedBy: 'discord:1400000000000000005',
        action: { approvalId: id, decision: 'approved' },
      },
      body: { type: 6 },
    });
    const other = readDiscordInteraction(
      buttonPress({ userId: '1400000000000000005', customId: 'something-else' }),
      opts,
    );
    expect(other).toMatchObject({ kind: 'approval', answer: { action: null } });
  });

  it('acts on no press on an account that does not ask approvers', () => {
    const press = buttonPress({ userId: '1400000000000000005', customId: `ap:${id}:y` });
    expect(readDiscordInteraction(press, { ...opts, approvals: false })).toEqual({
      kind: 'answer',
      body: { type: 6 },
    });
  });

  it('refuses an interaction for another application, naming the field', () => {
    expect(() => readDiscordInteraction(interactionPing('1999999999999999999'), opts)).toThrow(
      /application_id/,
    );
  });
});

describe('Discord markdown', () => {
  it('escapes markup and mentions outside code, keeps fences, and counts the escapes', () => {
    expect(
      formatForChannel(
        '**hi** @everyone <@123> [x](y)\n```js\nconst a = `b`;\n```',
        'discord',
        null,
      ),
    ).toEqual([
      '\\*\\*hi\\*\\* \\@everyone \\<\\@123\\> \\[x\\](y)\n```js\nconst a = \u02cbb\u02cb;\n```',
    ]);
    expect(formatForChannel('*'.repeat(10), 'discord', 10)).toEqual([
      '\\*'.repeat(5),
      '\\*'.repeat(5),
    ]);
    const long = formatForChannel('word '.repeat(1000), 'discord', 2000);
    expect(long.every((c) => c.length <= 2000)).toBe(true);
    expect(long.join(' ').split(' ')).toHaveLength(1000);
  });
});

describe('createDiscordSender against a fake Discord REST API', () => {
  let rest: DiscordRestServer;
  beforeAll(async () => {
    rest = await startDiscordRestServer({ token: TOKEN });
  });
  afterAll(() => rest.close());

  it('posts a reply with its nonce enforced and no mentions parsed', async () => {
    const sender = createDiscordSender({ token: TOKEN, apiBaseUrl: rest.apiBaseUrl });
    const sent = await sender.createMessage('1200000000000000002', {
      content: 'hello',
      replyTo: '1500000000000000001',
      nonce: 'n-1',
    });
    const post = rest.posts.at(-1)!;
    expect(post).toMatchObject({
      channelId: '1200000000000000002',
      id: sent.externalMessageId,
      token: TOKEN,
      body: {
        content: 'hello',
        nonce: 'n-1',
        enforce_nonce: true,
        allowed_mentions: { parse: [] },
        message_reference: { message_id: '1500000000000000001' },
      },
    });
    // A repeat of the nonce is answered with the first message, and makes none.
    const again = await sender.createMessage('1200000000000000002', {
      content: 'hello',
      nonce: 'n-1',
    });
    expect(again.externalMessageId).toBe(sent.externalMessageId);
    expect(rest.posts.filter((p) => p.body.nonce === 'n-1')).toHaveLength(1);
  });

  it("waits out a short 429's retry_after and sends the message once", async () => {
    const sender = createDiscordSender({ token: TOKEN, apiBaseUrl: rest.apiBaseUrl });
    const before = rest.requests.length;
    rest.failNext(1, { kind: 'rate_limited', retryAfter: 1 });
    await sender.createMessage('1200000000000000003', { content: 'limited', nonce: 'n-429' });
    const calls = rest.requests.slice(before).filter((r) => r.path.endsWith('/messages'));
    expect(calls.map((c) => c.status)).toEqual([429, 200]);
    expect(rest.posts.filter((p) => p.body.content === 'limited')).toHaveLength(1);
  });

  it('turns a wait past maxWaitMs into a RetryAfterError, sending nothing', async () => {
    const sender = createDiscordSender({
      token: TOKEN,
      apiBaseUrl: rest.apiBaseUrl,
      maxWaitMs: 500,
    });
    rest.failNext(1, { kind: 'rate_limited', retryAfter: 7 });
    const error = await sender
      .createMessage('1200000000000000004', { content: 'later' })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RetryAfterError);
    expect(error).toMatchObject({ code: 'CHANNEL_RATE_LIMITED' });
    expect((error as RetryAfterError).retryAfterMs).toBeGreaterThanOrEqual(7000);
    expect(rest.posts.filter((p) => p.body.content === 'later')).toHaveLength(0);
  });

  it('maps refusals, 5xx and an unreachable API by how to handle them', async () => {
    const sender = createDiscordSender({ token: TOKEN, apiBaseUrl: rest.apiBaseUrl });
    rest.failNext(1, { kind: 'error', status: 403, code: 50001, message: 'Missing Access' });
    const refused = await sender.createMessage('1', { content: 'x' }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(NonRetryableError);
    expect(refused).toMatchObject({ code: 'CHANNEL_REJECTED' });

    rest.failNext(2, { kind: 'http', status: 502 });
    expect(
      await sender.createMessage('1', { content: 'x' }).catch((e: unknown) => e),
    ).toMatchObject({
      code: 'CHANNEL_UNAVAILABLE',
    });

    const wrong = createDiscordSender({ token: 'not-the-token', apiBaseUrl: rest.apiBaseUrl });
    expect(await wrong.createMessage('1', { content: 'x' }).catch((e: unknown) => e)).toMatchObject(
      {
        code: 'CHANNEL_REJECTED',
      },
    );

    const port = await freePort();
    const away = createDiscordSender({ token: TOKEN, apiBaseUrl: `http://127.0.0.1:${port}/api` });
    const error = await away.createMessage('1', { content: 'x' }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'CHANNEL_UNAVAILABLE' });
    expect(String((error as Error).message)).not.toContain(TOKEN);
  });

  it('dedupes a taken-over row only within the nonce window', () => {
    const account = ChannelContract.parse({
      type: 'discord',
      botToken: 'secret:t',
      applicationId: DISCORD_APP_ID,
      publicKey: discordKeyPair().publicKey,
      apiBaseUrl: rest.apiBaseUrl,
    }) as Extract<ChannelContract, { type: 'discord' }>;
    const sender = discordPlugin.createSender(account, [TOKEN]);
    const now = Date.now();
    const row = (age: number) => ({ createdAt: now - age }) as ClaimedRow;
    const target = { now } as Parameters<typeof sender.methodFor>[1];
    expect(sender.methodFor([row(60_000)], target)).toEqual({
      name: 'createMessage',
      dedupes: true,
    });
    expect(sender.methodFor([row(DISCORD_NONCE_WINDOW_MS + 1)], target)).toEqual({
      name: 'createMessage',
      dedupes: false,
    });
  });
});

describe('the Discord Gateway connection against a fake Gateway', () => {
  let rest: DiscordRestServer;
  let gateway: FakeDiscordGateway;
  let held: HeldConnection | undefined;
  const batches: InboundBatch[] = [];
  const states: string[] = [];
  const sink: ConnectionSink = {
    async messages(batch) {
      batches.push(batch);
      return { runs: [], duplicate: false };
    },
    async approval() {},
    state: (state) => void states.push(state),
  };
  const account = () =>
    ChannelContract.parse({
      type: 'discord',
      botToken: 'secret:t',
      applicationId: DISCORD_APP_ID,
      publicKey: discordKeyPair().publicKey,
      apiBaseUrl: rest.apiBaseUrl,
    }) as Extract<ChannelContract, { type: 'discord' }>;

  beforeAll(async () => {
    rest = await startDiscordRestServer({ token: TOKEN });
    gateway = await startDiscordGateway({ token: TOKEN });
    rest.setGatewayUrl(gateway.url);
  });
  afterEach(async () => {
    await held?.stop();
    held = undefined;
  });
  afterAll(async () => {
    await gateway.close();
    await rest.close();
  });

  it('identifies with the message intents and hands a mention on once READY', async () => {
    held = await discordPlugin.connection!.open(account(), [TOKEN], sink, {
      projectId: 'p',
      accountId: 'dc',
    });
    await waitFor(() => gateway.ready() && states.includes('running'), { what: 'READY' });
    const identify = gateway.received.find((r) => r.op === 'identify');
    expect(identify).toMatchObject({ token: TOKEN, intents: (1 << 9) | (1 << 12) });
    gateway.dispatch(
      'MESSAGE_CREATE',
      messageCreate({
        id: '1500000000000000100',
        guildId: DISCORD_GUILD,
        content: `<@${DISCORD_BOT_USER}> ping`,
        mentions: [DISCORD_BOT_USER],
      }),
    );
    const batch = await waitFor(
      () => batches.find((b) => b.events[0]?.externalEventId === '1500000000000000100'),
      {
        what: 'the message at the sink',
      },
    );
    expect(batch.events[0]!.message.text).toBe('ping');
  });

  it('refuses to open with a token Discord does not take', async () => {
    const error = await discordPlugin
      .connection!.open(account(), ['wrong-token'], sink, { projectId: 'p', accountId: 'dc' })
      .catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'CHANNEL_REJECTED' });
  });

  it('resumes after a drop and a RECONNECT, and identifies anew after a lost session', async () => {
    held = await discordPlugin.connection!.open(account(), [TOKEN], sink, {
      projectId: 'p',
      accountId: 'dc',
    });
    await waitFor(() => gateway.ready(), { what: 'READY' });
    const start = gateway.received.length;
    gateway.drop();
    await waitFor(
      () => gateway.received.slice(start).find((r) => r.op === 'resume') && gateway.ready(),
      {
        what: 'a RESUME after the drop',
      },
    );
    gateway.reconnect();
    await waitFor(
      () =>
        gateway.received.slice(start).filter((r) => r.op === 'resume').length === 2 &&
        gateway.ready(),
      { what: 'a RESUME after RECONNECT' },
    );
    const identifies = gateway.received.filter((r) => r.op === 'identify').length;
    gateway.invalidateSession(false);
    await waitFor(
      () =>
        gateway.received.filter((r) => r.op === 'identify').length === identifies + 1 &&
        gateway.ready(),
      { what: 'a new IDENTIFY' },
    );
  });
});
