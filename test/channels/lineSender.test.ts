import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLineSender } from '../../pipeline/channels/line/createLineSender.ts';
import { NonRetryableError, RetryAfterError } from '../../pipeline/errors.ts';
import { failure } from '../helpers/failure.ts';
import { startLineServer, type LineServer } from '../fakes/lineServer.ts';

const ACCESS_TOKEN = 'line-access-token-secret_part';
const USER = 'U4af4980629aaaaaaaaaaaaaaaaaaaaaa';

let line: LineServer;
beforeAll(async () => {
  line = await startLineServer({ accessToken: ACCESS_TOKEN });
});
afterAll(async () => {
  await line.close();
});

const sender = () => createLineSender({ accessToken: ACCESS_TOKEN, baseUrl: line.baseUrl });

describe('createLineSender', () => {
  it('replies with a reply token, one text message per text', async () => {
    const sent = await sender().reply('reply-token-1', ['first', 'second']);
    expect(line.replies.at(-1)).toMatchObject({
      replyToken: 'reply-token-1',
      texts: ['first', 'second'],
      messages: [
        { type: 'text', text: 'first' },
        { type: 'text', text: 'second' },
      ],
      authorization: `Bearer ${ACCESS_TOKEN}`,
    });
    expect(sent.externalMessageIds).toHaveLength(2);
  });

  it('refuses a spent or expired reply token as LINE_REPLY_TOKEN_INVALID', async () => {
    await sender().reply('reply-token-2', ['once']);
    const again = await failure(sender().reply('reply-token-2', ['twice']));
    expect(again).toBeInstanceOf(NonRetryableError);
    expect(again.code).toBe('LINE_REPLY_TOKEN_INVALID');

    line.expireReplyToken('reply-token-3');
    const expired = await failure(sender().reply('reply-token-3', ['late']));
    expect(expired.code).toBe('LINE_REPLY_TOKEN_INVALID');
    expect(line.replies.filter((r) => r.texts[0] === 'twice' || r.texts[0] === 'late')).toEqual([]);
  });

  it('pushes with X-Line-Retry-Key', async () => {
    const key = randomUUID();
    const sent = await sender().push(USER, ['pushed'], key);
    expect(sent).toMatchObject({ duplicate: false });
    expect(sent.externalMessageIds).toHaveLength(1);
    expect(line.pushes.at(-1)).toMatchObject({ to: USER, texts: ['pushed'], retryKey: key });
  });

  it('reports a repeated retry key (409) as a duplicate and sends nothing twice', async () => {
    const key = randomUUID();
    await sender().push(USER, ['only once'], key);
    expect(await sender().push(USER, ['only once'], key)).toEqual({
      duplicate: true,
      externalMessageIds: [],
    });
    expect(line.pushes.filter((p) => p.retryKey === key)).toHaveLength(1);
  });

  it('makes a push whose answer was lost safe to retry', async () => {
    const key = randomUUID();
    line.failNext(1, { status: 500, path: '/v2/bot/message/push', delivered: true });
    const lost = await failure(sender().push(USER, ['lost answer'], key));
    expect(lost.code).toBe('CHANNEL_UNAVAILABLE');
    expect(await sender().push(USER, ['lost answer'], key)).toMatchObject({ duplicate: true });
    expect(line.pushes.filter((p) => p.retryKey === key)).toHaveLength(1);
  });

  it('turns a 429 into RetryAfterError, from Retry-After or else 1 s', async () => {
    line.failNext(1, { status: 429, retryAfter: 4 });
    const withHeader = await failure(sender().push(USER, ['x'], randomUUID()));
    expect(withHeader).toBeInstanceOf(RetryAfterError);
    expect(withHeader.code).toBe('CHANNEL_RATE_LIMITED');
    expect((withHeader as RetryAfterError).retryAfterMs).toBe(4000);

    line.failNext(1, { status: 429 });
    const bare = await failure(sender().reply('reply-token-4', ['x']));
    expect((bare as RetryAfterError).retryAfterMs).toBe(1000);
  });

  it('turns a 5xx or a refused connection into a retryable CHANNEL_UNAVAILABLE', async () => {
    line.failNext(1, { status: 500 });
    const down = await failure(sender().push(USER, ['x'], randomUUID()));
    expect(down).not.toBeInstanceOf(NonRetryableError);
    expect(down.code).toBe('CHANNEL_UNAVAILABLE');

    const gone = await startLineServer();
    await gone.close();
    const refused = await failure(
      createLineSender({ accessToken: ACCESS_TOKEN, baseUrl: gone.baseUrl }).push(
        USER,
        ['x'],
        randomUUID(),
      ),
    );
    expect(refused.code).toBe('CHANNEL_UNAVAILABLE');
    expect(JSON.stringify({ m: refused.message, d: refused.detail })).not.toContain('secret_part');
  });

  it('turns other 4xx into a non-retryable CHANNEL_REJECTED with LINE message', async () => {
    const badToken = await failure(
      createLineSender({ accessToken: 'wrong', baseUrl: line.baseUrl }).push(
        USER,
        ['x'],
        randomUUID(),
      ),
    );
    expect(badToken).toBeInstanceOf(NonRetryableError);
    expect(badToken.code).toBe('CHANNEL_REJECTED');
    expect(badToken.message).toContain('Authentication failed');

    const tooLong = await failure(sender().push(USER, ['x'.repeat(5001)], randomUUID()));
    expect(tooLong.code).toBe('CHANNEL_REJECTED');
  });

  it('refuses more than five texts, or none, before calling LINE', async () => {
    const before = line.requests.length;
    const six = await failure(sender().push(USER, ['1', '2', '3', '4', '5', '6'], randomUUID()));
    expect(six).toBeInstanceOf(NonRetryableError);
    await failure(sender().reply('reply-token-5', []));
    expect(line.requests.length).toBe(before);
    await sender().reply('reply-token-5', ['1', '2', '3', '4', '5']);
    expect(line.replies.at(-1)?.texts).toHaveLength(5);
  });

  it('starts the loading animation in a 1:1 chat', async () => {
    await sender().showLoading(USER);
    expect(line.loadings.at(-1)).toEqual({ chatId: USER, loadingSeconds: 20 });
    expect(line.requests.at(-1)?.path).toBe('/v2/bot/chat/loading/start');
  });
});
