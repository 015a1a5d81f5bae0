import { describe, expect, it } from 'vitest';
import { normalizeLineWebhook } from '../../pipeline/channels/line/normalizeLineWebhook.ts';
import { ContractViolationError } from '../../pipeline/errors.ts';
import { lineStickerEvent, lineTextEvent, lineWebhook } from '../../ops/fakes/channelPayloads.ts';

const secret = 'line-channel-secret';
const receivedAt = new Date('2026-11-20T10:00:00.000Z');

function parsed(events: Parameters<typeof lineWebhook>[0]['events']): unknown {
  return JSON.parse(lineWebhook({ events, channelSecret: secret }).body);
}

describe('normalizeLineWebhook', () => {
  it('reads a 1:1 text message as a dm with a reply token good for 50 s', () => {
    const body = parsed([
      {
        text: 'hello',
        webhookEventId: '01FZ74A0TDDPYRVKNK77XKC3ZR',
        userId: 'U4af4980629aaaaaaaaaaaaaaaaaaaaaa',
        replyToken: 'b60d432864f44d079f6d8efe86cf404b',
      },
    ]);
    expect(normalizeLineWebhook(body, receivedAt)).toEqual({
      ignored: 0,
      events: [
        {
          externalEventId: '01FZ74A0TDDPYRVKNK77XKC3ZR',
          sender: { id: 'U4af4980629aaaaaaaaaaaaaaaaaaaaaa', isBot: false },
          conversation: { kind: 'dm', id: 'U4af4980629aaaaaaaaaaaaaaaaaaaaaa' },
          message: { text: 'hello', attachments: [] },
          replyToken: {
            value: 'b60d432864f44d079f6d8efe86cf404b',
            expiresAt: '2026-11-20T10:00:50.000Z',
          },
        },
      ],
    });
  });

  it('reads group and room messages as groups, keeping the speaker and a quoted message', () => {
    const { events } = normalizeLineWebhook(
      parsed([
        { text: 'in group', groupId: 'Ca56f94637c00', userId: 'U1', quotedMessageId: '4680' },
        { text: 'in room', roomId: 'Ra8dbf4673c00', userId: 'U2' },
      ]),
      receivedAt,
    );
    expect(events.map((e) => [e.conversation, e.sender.id, e.message])).toEqual([
      [
        { kind: 'group', id: 'Ca56f94637c00' },
        'U1',
        { text: 'in group', replyToExternalId: '4680', attachments: [] },
      ],
      [{ kind: 'group', id: 'Ra8dbf4673c00' }, 'U2', { text: 'in room', attachments: [] }],
    ]);
  });

  it('counts locations, follows, postbacks and standby events as ignored', () => {
    const standby = lineTextEvent({ text: 'another bot answers this' });
    standby.mode = 'standby';
    delete standby.replyToken;
    const batch = normalizeLineWebhook(
      parsed([
        {
          raw: {
            type: 'message',
            mode: 'active',
            timestamp: 1,
            webhookEventId: 'A0',
            source: { type: 'user', userId: 'U9' },
            replyToken: 'r0',
            message: { id: '3251', type: 'location', latitude: 35.68, longitude: 139.76 },
          },
        },
        {
          raw: {
            type: 'follow',
            mode: 'active',
            timestamp: 1,
            webhookEventId: 'A1',
            source: { type: 'user', userId: 'U9' },
            replyToken: 'r',
            follow: { isUnblocked: false },
          },
        },
        {
          raw: {
            type: 'postback',
            mode: 'active',
            timestamp: 1,
            webhookEventId: 'A2',
            source: { type: 'user', userId: 'U9' },
            postback: { data: 'approve=1' },
          },
        },
        { raw: standby },
        { text: 'the one to answer' },
      ]),
      receivedAt,
    );
    expect(batch.ignored).toBe(4);
    expect(batch.events.map((e) => e.message.text)).toEqual(['the one to answer']);
  });

  it("accepts LINE's verification call with no events", () => {
    expect(normalizeLineWebhook({ destination: 'Uxxxxxxxx', events: [] }, receivedAt)).toEqual({
      events: [],
      ignored: 0,
    });
  });

  it('refuses a body that is not a webhook, naming the field', () => {
    const issuesOf = (body: unknown) => {
      try {
        normalizeLineWebhook(body, receivedAt);
      } catch (error) {
        expect(error).toBeInstanceOf(ContractViolationError);
        return (error as ContractViolationError).issues;
      }
      throw new Error('expected a ContractViolationError');
    };
    expect(issuesOf({ destination: 'U1' })).toEqual(['events: required']);
    expect(issuesOf({ destination: 'U1', events: {} })).toEqual([
      'events: must be a list, not a mapping',
    ]);

    const noUser = lineTextEvent({ text: 'hi' });
    noUser.source = { type: 'user' };
    expect(issuesOf({ destination: 'U1', events: [lineStickerEvent(), noUser] })).toEqual([
      'events[1].source.userId: required',
    ]);

    const noId = lineTextEvent({ text: 'hi' });
    delete noId.webhookEventId;
    expect(issuesOf({ destination: 'U1', events: [noId] })).toEqual([
      'events[0].webhookEventId: required',
    ]);
  });
});
