import { describe, expect, it } from 'vitest';
import { normalizeTelegramUpdate } from '../../pipeline/channels/telegram/normalizeTelegramUpdate.ts';
import {
  approvalCallbackData,
  readApprovalCallback,
} from '../../pipeline/channels/telegram/readApprovalCallback.ts';
import { ContractViolationError } from '../../pipeline/errors.ts';
import { telegramCallbackQuery, telegramUpdate } from '../../ops/fakes/channelPayloads.ts';

function violation(body: unknown): ContractViolationError {
  try {
    normalizeTelegramUpdate(body);
  } catch (error) {
    if (error instanceof ContractViolationError) return error;
    throw error;
  }
  throw new Error('expected a ContractViolationError');
}

describe('normalizeTelegramUpdate', () => {
  it('reads a private chat message as a dm keyed by update_id', () => {
    const batch = normalizeTelegramUpdate(
      telegramUpdate({ updateId: 900001, chatId: 4242, text: 'hello there' }),
    );
    expect(batch).toEqual({
      ignored: 0,
      events: [
        {
          externalEventId: '900001',
          sender: { id: '4242', displayName: 'Ada Lovelace', isBot: false },
          conversation: { kind: 'dm', id: '4242' },
          message: { text: 'hello there', attachments: [] },
        },
      ],
    });
  });

  it('reads a supergroup message as a group with the sender apart from the chat', () => {
    const { events } = normalizeTelegramUpdate(
      telegramUpdate({ updateId: 7, chatId: -1001234567890, fromId: 55, text: '/status db' }),
    );
    expect(events[0]?.conversation).toEqual({ kind: 'group', id: '-1001234567890' });
    expect(events[0]?.sender.id).toBe('55');
    expect(events[0]?.message.text).toBe('/status db');
  });

  it('keeps the forum topic as threadId and does not take the topic root for a reply', () => {
    const { events } = normalizeTelegramUpdate(
      telegramUpdate({ updateId: 8, chatId: -100999, threadId: 77, text: 'in a topic' }),
    );
    expect(events[0]?.conversation).toEqual({ kind: 'group', id: '-100999', threadId: '77' });
    expect(events[0]?.message).toEqual({ text: 'in a topic', attachments: [] });
  });

  it('ignores message_thread_id outside forum topics (reply threads in plain groups)', () => {
    const body = telegramUpdate({ updateId: 9, chatId: -100999, text: 'x', replyToMessageId: 5 });
    const message = body.message as Record<string, unknown>;
    message.message_thread_id = 5;
    const { events } = normalizeTelegramUpdate(body);
    expect(events[0]?.conversation).toEqual({ kind: 'group', id: '-100999' });
    expect(events[0]?.message.replyToExternalId).toBe('5');
  });

  it('uses a caption as the text of a media message', () => {
    const { events } = normalizeTelegramUpdate(
      telegramUpdate({ updateId: 10, chatId: 42, text: 'what is in this graph?', asCaption: true }),
    );
    expect(events[0]?.message.text).toBe('what is in this graph?');
  });

  it('reads edited messages and channel posts', () => {
    const edited = telegramUpdate({ updateId: 11, chatId: 42, text: 'fixed typo' });
    const post = telegramUpdate({ updateId: 12, chatId: -1005, chatType: 'channel', text: 'news' });
    const postMessage = post.message as Record<string, unknown>;
    delete postMessage.from;
    postMessage.sender_chat = postMessage.chat;

    expect(
      normalizeTelegramUpdate({ update_id: 11, edited_message: edited.message }).events[0]?.message,
    ).toEqual({ text: 'fixed typo', attachments: [] });
    const { events } = normalizeTelegramUpdate({ update_id: 12, channel_post: postMessage });
    expect(events[0]?.sender).toEqual({ id: '-1005', displayName: 'Ops Room', isBot: false });
    expect(events[0]?.conversation.kind).toBe('group');
  });

  it('counts a location, a member join and a button press as ignored', () => {
    const location = telegramUpdate({ updateId: 13, chatId: 42, text: 'x' });
    const message = location.message as Record<string, unknown>;
    delete message.text;
    message.location = { latitude: 52.52, longitude: 13.405 };
    const join = {
      update_id: 14,
      message: {
        message_id: 3,
        date: 1_700_000_000,
        chat: { id: -100999, title: 'Ops Room', type: 'supergroup' },
        from: { id: 55, is_bot: false, first_name: 'Bo' },
        new_chat_members: [{ id: 56, is_bot: false, first_name: 'Cy' }],
      },
    };
    const callback = {
      update_id: 15,
      callback_query: {
        id: '4382',
        from: { id: 55, is_bot: false, first_name: 'Bo' },
        data: 'approve',
      },
    };
    for (const body of [location, join, callback]) {
      expect(normalizeTelegramUpdate(body)).toEqual({ events: [], ignored: 1 });
    }
  });

  it('accepts fields the schema does not know (newer Bot API releases)', () => {
    const body = telegramUpdate({ updateId: 16, chatId: 42, text: 'hi' });
    (body.message as Record<string, unknown>).paid_star_count = 3;
    expect(normalizeTelegramUpdate({ ...body, business_connection: {} }).events).toHaveLength(1);
  });

  it('refuses a body without an integer update_id, naming the field', () => {
    expect(violation({ message: {} }).issues).toContain('update_id: required');
    expect(violation({ update_id: '5' }).issues).toContain('update_id: must be a number, not text');
    expect(violation({ update_id: 1.5 }).issues[0]).toMatch(/^update_id: /);
    expect(violation(null).issues[0]).toMatch(/^\(root\): /);
  });

  it('refuses a message with wrong field types, naming the field', () => {
    const body = telegramUpdate({ updateId: 17, chatId: 42, text: 'hi' });
    const message = body.message as Record<string, Record<string, unknown>>;
    message.chat!.id = 'forty-two';
    message.chat!.type = 'secret';
    const error = violation(body);
    expect(error.code).toBe('CONTRACT_INVALID');
    expect(error.status).toBe(400);
    expect(error.issues).toEqual([
      'message.chat.id: must be a number, not text',
      'message.chat.type: must be one of: private, group, supergroup, channel',
    ]);
  });
});

describe('readApprovalCallback', () => {
  const id = '0f8fad5b-d9cb-469f-a165-70867728950e';

  it('reads an approval button press: query id, presser and decision', () => {
    expect(approvalCallbackData(id, 'approved')).toBe(`ap:${id}:y`);
    const body = telegramCallbackQuery({
      updateId: 1,
      fromId: 5551,
      data: approvalCallbackData(id, 'rejected'),
      callbackQueryId: '8811',
    });
    expect(readApprovalCallback(body)).toEqual({
      callbackQueryId: '8811',
      fromId: '5551',
      action: { approvalId: id, decision: 'rejected' },
    });
    // a button press is never a message: it makes no event
    expect(normalizeTelegramUpdate(body)).toEqual({ events: [], ignored: 1 });
  });

  it('gives no action for data that is not an approval button', () => {
    for (const data of ['approve', `ap:${id}:maybe`, `ap:${id.toUpperCase()}:y`, `ap:${id}:y:x`]) {
      const body = telegramCallbackQuery({ updateId: 2, fromId: 1, data });
      expect(readApprovalCallback(body)?.action).toBeNull();
    }
  });

  it('is null for an update without a button press', () => {
    expect(
      readApprovalCallback(telegramUpdate({ updateId: 3, chatId: 42, text: 'hi' })),
    ).toBeNull();
  });
});
