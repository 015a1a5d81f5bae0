import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSlackSender } from '../../pipeline/channels/slack/createSlackSender.ts';
import { normalizeSlackEvent } from '../../pipeline/channels/slack/normalizeSlackEvent.ts';
import { slackPlugin } from '../../pipeline/channels/slack/slackPlugin.ts';
import { ChannelContract } from '../../pipeline/contracts/channelContract.ts';
import {
  signSlackRequest,
  verifySlackSignature,
} from '../../pipeline/channels/slack/verifySlackSignature.ts';
import { AppError, NonRetryableError, RetryAfterError } from '../../pipeline/errors.ts';
import { formatForChannel } from '../../pipeline/sanitize/formatForChannel.ts';
import { freePort } from '../../ops/freePort.ts';
import {
  SLACK_BOT_USER,
  slackEventCallback,
  slackUrlVerification,
} from '../../ops/fakes/slackPayloads.ts';
import { startSlackServer, type SlackServer } from '../../ops/fakes/slackServer.ts';

const SECRET = '8f742231b10e8888abcd99yyyzzz85a5';

describe('verifySlackSignature', () => {
  // The worked example from Slack's "Verifying requests from Slack" page.
  const body =
    'token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c';
  const timestamp = '1531420618';
  const signature = 'v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503';
  const at = Number(timestamp) * 1000;

  it("accepts the documentation's example and refuses it with one byte changed", () => {
    expect(signSlackRequest(body, SECRET, timestamp)).toBe(signature);
    expect(verifySlackSignature(Buffer.from(body), SECRET, { signature, timestamp }, at)).toBe(
      true,
    );
    expect(
      verifySlackSignature(Buffer.from(`${body}x`), SECRET, { signature, timestamp }, at),
    ).toBe(false);
    expect(verifySlackSignature(Buffer.from(body), 'other', { signature, timestamp }, at)).toBe(
      false,
    );
  });

  it('refuses a correctly signed request more than five minutes old or ahead', () => {
    const raw = Buffer.from(body);
    expect(verifySlackSignature(raw, SECRET, { signature, timestamp }, at + 299_000)).toBe(true);
    expect(verifySlackSignature(raw, SECRET, { signature, timestamp }, at + 301_000)).toBe(false);
    expect(verifySlackSignature(raw, SECRET, { signature, timestamp }, at - 301_000)).toBe(false);
  });

  it('refuses missing, malformed and upper-cased signatures and an empty secret', () => {
    const raw = Buffer.from(body);
    for (const bad of [
      undefined,
      '',
      'v1=' + signature.slice(3),
      signature.toUpperCase(),
      'v0=ab',
    ]) {
      expect(verifySlackSignature(raw, SECRET, { signature: bad, timestamp }, at)).toBe(false);
    }
    expect(verifySlackSignature(raw, SECRET, { signature, timestamp: undefined }, at)).toBe(false);
    expect(verifySlackSignature(raw, SECRET, { signature, timestamp: '1e9' }, at)).toBe(false);
    expect(verifySlackSignature(raw, '', { signature, timestamp }, at)).toBe(false);
  });
});

describe('normalizeSlackEvent', () => {
  it('echoes a url_verification challenge', () => {
    expect(normalizeSlackEvent(slackUrlVerification('abc'))).toEqual({
      kind: 'challenge',
      challenge: 'abc',
    });
  });

  it('reads an app_mention as a group message in a thread of its own ts, the mention taken out', () => {
    const read = normalizeSlackEvent(
      slackEventCallback({
        eventId: 'Ev0LAN670R',
        kind: 'app_mention',
        text: 'is it everything a river should be? a &amp; b &lt;3',
        ts: '1515449522.000016',
      }),
    );
    expect(read).toEqual({
      kind: 'events',
      batch: {
        ignored: 0,
        events: [
          {
            externalEventId: 'Ev0LAN670R',
            sender: { id: 'U061F7AUR', isBot: false },
            conversation: { kind: 'group', id: 'C0LAN2Q65', threadId: '1515449522.000016' },
            message: { text: 'is it everything a river should be? a & b <3', attachments: [] },
          },
        ],
      },
    });
  });

  it('reads a direct message as a dm, and a reply in a thread under its thread_ts', () => {
    const read = normalizeSlackEvent(
      slackEventCallback({
        eventId: 'Ev1',
        kind: 'im',
        text: 'Hello hello can you hear me?',
        ts: '1355517523.000005',
        threadTs: '1355517500.000001',
      }),
    );
    expect(read.kind === 'events' && read.batch.events[0]?.conversation).toEqual({
      kind: 'dm',
      id: 'D024BE91L',
      threadId: '1355517500.000001',
    });
  });

  it("ignores bot posts, the bot's own messages, subtypes, channel messages and other events", () => {
    const ignored = [
      slackEventCallback({ eventId: 'a', kind: 'im', text: 'x', extra: { bot_id: 'B1' } }),
      slackEventCallback({ eventId: 'b', kind: 'im', text: 'x', user: SLACK_BOT_USER }),
      slackEventCallback({
        eventId: 'c',
        kind: 'im',
        text: 'x',
        extra: { subtype: 'message_changed' },
      }),
      slackEventCallback({
        eventId: 'd',
        kind: 'im',
        text: 'x',
        extra: { channel_type: 'channel' },
      }),
      slackEventCallback({
        eventId: 'e',
        kind: 'im',
        text: 'x',
        extra: { type: 'reaction_added' },
      }),
      {
        type: 'app_rate_limited',
        token: 't',
        team_id: 'T1',
        minute_rate_limited: 1518467820,
        api_app_id: 'A1',
      },
    ];
    for (const body of ignored) {
      expect(normalizeSlackEvent(body)).toEqual({
        kind: 'events',
        batch: { events: [], ignored: 1 },
      });
    }
  });

  it('refuses a body that is no Events API envelope, naming the field', () => {
    expect(() => normalizeSlackEvent({ type: 'event_callback', event: {} })).toThrow(/event_id/);
    expect(() => normalizeSlackEvent({ type: 'nonsense' })).toThrow(/type/);
  });
});

describe('createSlackSender against a fake Slack Web API', () => {
  let slack: SlackServer;
  const token = 'xoxb-test-0123456789-abcdef';
  beforeAll(async () => {
    slack = await startSlackServer({ token });
  });
  afterAll(() => slack.close());

  it('posts in the thread with the bot token and returns the message ts', async () => {
    const sender = createSlackSender({ token, apiBaseUrl: slack.apiBaseUrl });
    const sent = await sender.postMessage('C1', 'a &amp; b', { threadTs: '1.000001' });
    const post = slack.posts.at(-1)!;
    expect(post).toMatchObject({ channel: 'C1', text: 'a &amp; b', threadTs: '1.000001', token });
    expect(sent.externalMessageId).toBe(post.ts);
  });

  it('declares chat.postMessage not deduped, so the ledger settles a taken-over row uncertain', () => {
    const account = ChannelContract.parse({
      type: 'slack',
      signingSecret: 'secret:s',
      botToken: 'secret:b',
      apiBaseUrl: slack.apiBaseUrl,
    });
    if (account.type !== 'slack') throw new Error('not a slack account');
    const sender = slackPlugin.createSender(account, [token]);
    expect(sender.methodFor([], undefined as never)).toEqual({
      name: 'chat.postMessage',
      dedupes: false,
    });
  });

  it('turns a 429 into a RetryAfterError with its Retry-After, and makes no retry itself', async () => {
    const sender = createSlackSender({ token, apiBaseUrl: slack.apiBaseUrl });
    slack.failNext(1, { kind: 'rate_limited', retryAfter: 7 });
    const before = slack.requests.length;
    const error = await sender.postMessage('C1', 'hi').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RetryAfterError);
    expect(error).toMatchObject({ code: 'CHANNEL_RATE_LIMITED', retryAfterMs: 7000 });
    expect(slack.requests.length - before).toBe(1);
  });

  it('maps refusals, failures part-way and unreachable servers by how to handle them', async () => {
    const sender = createSlackSender({ token, apiBaseUrl: slack.apiBaseUrl });
    slack.failNext(1, { kind: 'error', error: 'channel_not_found' });
    const refused = await sender.postMessage('C1', 'hi').catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(NonRetryableError);
    expect(refused).toMatchObject({ code: 'CHANNEL_REJECTED' });

    slack.failNext(1, { kind: 'error', error: 'fatal_error' });
    expect(await sender.postMessage('C1', 'hi').catch((e: unknown) => e)).toMatchObject({
      code: 'CHANNEL_UNCERTAIN',
    });

    slack.failNext(1, { kind: 'http', status: 502 });
    expect(await sender.postMessage('C1', 'hi').catch((e: unknown) => e)).toMatchObject({
      code: 'CHANNEL_UNAVAILABLE',
    });

    const wrongToken = createSlackSender({ token: 'xoxb-wrong', apiBaseUrl: slack.apiBaseUrl });
    expect(await wrongToken.postMessage('C1', 'hi').catch((e: unknown) => e)).toMatchObject({
      code: 'CHANNEL_REJECTED',
    });

    const port = await freePort();
    const away = createSlackSender({ token, apiBaseUrl: `http://127.0.0.1:${port}/api/` });
    const error = await away.postMessage('C1', 'hi').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AppError);
    expect(error).toMatchObject({ code: 'CHANNEL_UNAVAILABLE' });
    expect(String((error as Error).message)).not.toContain(token);
  });
});

describe('mrkdwn formatting', () => {
  it('escapes &, < and > in text and code, keeps fences, and counts the escapes', () => {
    expect(formatForChannel('a & b <!channel> <@U1>\n```js\nx < 1\n```', 'mrkdwn', null)).toEqual([
      'a &amp; b &lt;!channel&gt; &lt;@U1&gt;\n```\nx &lt; 1\n```',
    ]);
    const chunks = formatForChannel('&'.repeat(10), 'mrkdwn', 25);
    expect(chunks).toEqual(['&amp;'.repeat(5), '&amp;'.repeat(5)]);
  });
});
