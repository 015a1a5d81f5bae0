import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTelegramSender } from '../../pipeline/channels/telegram/createTelegramSender.ts';
import { NonRetryableError, RetryAfterError, type AppError } from '../../pipeline/errors.ts';
import { failure } from '../helpers/failure.ts';
import { startTelegramServer, type TelegramServer } from '../../ops/fakes/telegramServer.ts';

const TOKEN = '7000000001:AAHk-secret_part-ZZZZ';

let tg: TelegramServer;
beforeAll(async () => {
  tg = await startTelegramServer({ token: TOKEN });
});
afterAll(async () => {
  await tg.close();
});

/** Everything a log line could show of an error. */
function everything(error: AppError): string {
  return JSON.stringify({
    message: error.message,
    detail: error.detail,
    cause: String(error.cause),
    stack: error.stack,
  });
}

describe('createTelegramSender', () => {
  it('sends text with parse_mode and a forum topic id, returning the message id', async () => {
    const sender = createTelegramSender({ token: TOKEN, apiRoot: tg.apiRoot });
    const sent = await sender.sendText('-1001234567890', '<b>done</b>', {
      parseMode: 'HTML',
      threadId: '77',
    });
    const last = tg.sent.at(-1);
    expect(last).toMatchObject({
      token: TOKEN,
      chat_id: '-1001234567890',
      text: '<b>done</b>',
      parse_mode: 'HTML',
      message_thread_id: 77,
    });
    expect(sent).toEqual({ externalMessageId: String(last?.message_id) });
  });

  it('sends no parse_mode for plain text', async () => {
    const sender = createTelegramSender({ token: TOKEN, apiRoot: tg.apiRoot });
    await sender.sendText('42', 'a *literal* star', { parseMode: 'plain' });
    expect(tg.sent.at(-1)).toMatchObject({
      text: 'a *literal* star',
      parse_mode: undefined,
      message_thread_id: undefined,
    });
  });

  it('shows typing in a chat and in a topic', async () => {
    const sender = createTelegramSender({ token: TOKEN, apiRoot: tg.apiRoot });
    await sender.sendTyping('42');
    await sender.sendTyping('-100999', '77');
    expect(tg.actions.slice(-2)).toEqual([
      { token: TOKEN, chat_id: '42', action: 'typing', message_thread_id: undefined },
      { token: TOKEN, chat_id: '-100999', action: 'typing', message_thread_id: 77 },
    ]);
  });

  it('sends reply_markup (an inline keyboard) with the text', async () => {
    const sender = createTelegramSender({ token: TOKEN, apiRoot: tg.apiRoot });
    const keyboard = { inline_keyboard: [[{ text: 'Approve', callback_data: 'ap:x:y' }]] };
    await sender.sendText('42', 'approve?', { parseMode: 'plain', replyMarkup: keyboard });
    expect(tg.sent.at(-1)).toMatchObject({ text: 'approve?', reply_markup: keyboard });
  });

  it('answers a callback query once; a second answer is a non-retryable refusal', async () => {
    const sender = createTelegramSender({ token: TOKEN, apiRoot: tg.apiRoot });
    await sender.answerCallback('q-1', 'Approved');
    expect(tg.callbackAnswers.at(-1)).toEqual({
      token: TOKEN,
      callback_query_id: 'q-1',
      text: 'Approved',
    });
    const again = await failure(sender.answerCallback('q-1', 'Approved'));
    expect(again).toBeInstanceOf(NonRetryableError);
    expect(again.code).toBe('CHANNEL_REJECTED');
    expect(again.message).toContain('answerCallbackQuery');
  });

  it('turns a 429 into RetryAfterError with retry_after in ms', async () => {
    const sender = createTelegramSender({ token: TOKEN, apiRoot: tg.apiRoot });
    tg.failNext(1, { status: 429, retryAfter: 7 });
    const error = await failure(sender.sendText('42', 'hi', { parseMode: 'plain' }));
    expect(error).toBeInstanceOf(RetryAfterError);
    expect(error.code).toBe('CHANNEL_RATE_LIMITED');
    expect((error as RetryAfterError).retryAfterMs).toBe(7000);
    expect(tg.sent.filter((m) => m.text === 'hi')).toHaveLength(0);
  });

  it('turns a 500 into a retryable CHANNEL_UNAVAILABLE', async () => {
    const sender = createTelegramSender({ token: TOKEN, apiRoot: tg.apiRoot });
    tg.failNext(1, { status: 500 });
    const error = await failure(sender.sendText('42', 'hi', { parseMode: 'plain' }));
    expect(error).not.toBeInstanceOf(NonRetryableError);
    expect(error.code).toBe('CHANNEL_UNAVAILABLE');
    expect(error.status).toBe(503);
  });

  it('turns other 4xx into a non-retryable CHANNEL_REJECTED with the description', async () => {
    const sender = createTelegramSender({ token: TOKEN, apiRoot: tg.apiRoot });
    tg.failNext(1, { status: 403 });
    const blocked = await failure(sender.sendText('42', 'hi', { parseMode: 'plain' }));
    expect(blocked).toBeInstanceOf(NonRetryableError);
    expect(blocked.code).toBe('CHANNEL_REJECTED');
    expect(blocked.message).toContain('bot was blocked by the user');

    const tooLong = await failure(sender.sendText('42', 'x'.repeat(4097), { parseMode: 'plain' }));
    expect(tooLong.code).toBe('CHANNEL_REJECTED');
    expect(tooLong.detail).toMatchObject({
      errorCode: 400,
      description: 'Bad Request: message is too long',
    });
  });

  it('has its 4096 counted after entity parsing, as Telegram counts it', async () => {
    const sender = createTelegramSender({ token: TOKEN, apiRoot: tg.apiRoot });
    const html = '&amp;'.repeat(4096);
    await expect(sender.sendText('42', html, { parseMode: 'HTML' })).resolves.toBeDefined();
    const markdown = '\\.'.repeat(4096);
    await expect(
      sender.sendText('42', markdown, { parseMode: 'MarkdownV2' }),
    ).resolves.toBeDefined();
    const over = await failure(sender.sendText('42', `<b>${html}x</b>`, { parseMode: 'HTML' }));
    expect(over.detail).toMatchObject({ description: 'Bad Request: message is too long' });
  });

  it('refuses a wrong token as non-retryable', async () => {
    const sender = createTelegramSender({ token: '1:wrong', apiRoot: tg.apiRoot });
    const error = await failure(sender.sendText('42', 'hi', { parseMode: 'plain' }));
    expect(error).toBeInstanceOf(NonRetryableError);
    expect(error.message).toContain('401');
  });

  describe('never puts the token in an error', () => {
    let htmlRoot: string;
    const html = createServer((_req, res) => {
      res.writeHead(404, { 'content-type': 'text/html' });
      res.end('<html><body>Not Found</body></html>');
    });
    beforeAll(async () => {
      await new Promise<void>((resolve) => html.listen(0, '127.0.0.1', resolve));
      htmlRoot = `http://127.0.0.1:${(html.address() as AddressInfo).port}`;
    });
    afterAll(async () => {
      html.closeAllConnections();
      await new Promise((resolve) => html.close(resolve));
    });

    it('on 429, 500 and 400 answers', async () => {
      const sender = createTelegramSender({ token: TOKEN, apiRoot: tg.apiRoot });
      for (const status of [429, 500, 400]) {
        tg.failNext(1, { status });
        const error = await failure(sender.sendText('42', 'hi', { parseMode: 'plain' }));
        expect(everything(error)).not.toContain('secret_part');
      }
    });

    it('on a refused connection', async () => {
      const closed = await startTelegramServer();
      await closed.close();
      for (const token of [TOKEN, 'custom-proxy-token-secret_part']) {
        const sender = createTelegramSender({ token, apiRoot: closed.apiRoot });
        const error = await failure(sender.sendText('42', 'hi', { parseMode: 'plain' }));
        expect(error.code).toBe('CHANNEL_UNAVAILABLE');
        expect(everything(error)).not.toContain('secret_part');
      }
    });

    it('on an answer that is not JSON (its error carries the request URL)', async () => {
      for (const token of [TOKEN, 'custom-proxy-token-secret_part']) {
        const sender = createTelegramSender({ token, apiRoot: htmlRoot });
        const error = await failure(sender.sendText('42', 'hi', { parseMode: 'plain' }));
        expect(error.code).toBe('CHANNEL_UNAVAILABLE');
        expect(error.message).toContain('[REDACTED]');
        expect(everything(error)).not.toContain('secret_part');
      }
    });
  });
});
