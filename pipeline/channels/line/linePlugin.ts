import { CHANNEL_TEXT_LIMITS } from '../../contracts/channelContract.ts';
import { AppError } from '../../errors.ts';
import { formatForChannel } from '../../sanitize/formatForChannel.ts';
import type { ChannelPlugin } from '../ChannelPlugin.ts';
import { createLineSender, LINE_MAX_MESSAGES_PER_CALL } from './createLineSender.ts';
import { normalizeLineWebhook } from './normalizeLineWebhook.ts';
import { verifyLineSignature } from './verifyLineSignature.ts';

/**
 * LINE through the Messaging API: a webhook signed by an HMAC of the raw body, answers in
 * plain text, five messages a call, by the webhook's single-use reply token when it is still
 * fresh (free, but never repeatable) and by push otherwise (deduped by LINE on the row's id as
 * `X-Line-Retry-Key`), and a loading animation in one-to-one chats. No approval buttons.
 */
export const linePlugin: ChannelPlugin<'line'> = {
  type: 'line',
  displayName: 'LINE',
  capabilities: {
    threads: false,
    edits: false,
    typing: true,
    statusNote: true,
    buttons: false,
    maxMessageChars: CHANNEL_TEXT_LIMITS.line,
    batchSize: LINE_MAX_MESSAGES_PER_CALL,
  },
  dialect: () => 'plain',
  delivery: () => 'send',
  format: (text, _account, limit) => formatForChannel(text, 'plain', limit),
  inbound: {
    signedBy: 'x-line-signature',
    async verify(request, account, secret) {
      const raw = await request.rawBody();
      const channelSecret = await secret(account.channelSecret);
      return verifyLineSignature(
        raw,
        channelSecret,
        request.headers['x-line-signature'] || undefined,
      );
    },
    normalize: (body, account, request) => ({
      kind: 'messages',
      batch: normalizeLineWebhook(body, request.receivedAt, account.media),
    }),
    // LINE sends a refused webhook again only with "Webhook redelivery" on; without it a
    // refusal would lose the messages, so they are absorbed.
    overload: (account) => (account.redelivery === true ? 'refuse' : 'absorb'),
  },
  credentials: (account) => [account.channelAccessToken],
  createSender(account, [accessToken]) {
    const line = createLineSender({
      accessToken: accessToken ?? '',
      ...(account.apiBaseUrl ? { baseUrl: account.apiBaseUrl } : {}),
    });
    return {
      methodFor(rows, { event, now }) {
        // A reply token is single-use: only a first attempt of the first batch may spend it.
        const token = event.replyToken;
        const firstTry = rows.every((r) => r.attempts === 1);
        const isFirstBatch = rows[0]!.chunkIndex === 0 && rows[0]!.kind !== 'status';
        const fresh = token !== undefined && Date.parse(token.expiresAt) > now + 1000;
        if (firstTry && isFirstBatch && fresh) return { name: 'reply', dedupes: false };
        // A row taken over from a first try of the first batch may have gone out as that
        // reply, which X-Line-Retry-Key does not cover: a push now could be a second copy.
        const mayHaveReplied =
          isFirstBatch && token !== undefined && rows.some((r) => r.takenOver && r.attempts === 2);
        return { name: 'push', dedupes: !mayHaveReplied };
      },
      async send(rows, method, { event }) {
        const texts = rows.map((r) => r.text);
        if (method.name === 'reply' && event.replyToken) {
          try {
            await line.reply(event.replyToken.value, texts);
            return { method: 'reply' };
          } catch (error) {
            if (!(error instanceof AppError) || error.code !== 'LINE_REPLY_TOKEN_INVALID')
              throw error;
          }
        }
        const conversation = event.conversation;
        const to = conversation.kind === 'dm' ? event.sender.id : conversation.id;
        await line.push(to, texts, rows[0]!.messageId);
        return { method: 'push' };
      },
      async typing({ event }) {
        // LINE has a loading animation for one-to-one chats only.
        if (event.conversation.kind === 'dm') await line.showLoading(event.sender.id);
      },
    };
  },
};
