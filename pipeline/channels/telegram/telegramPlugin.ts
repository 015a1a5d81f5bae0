import { CHANNEL_TEXT_LIMITS } from '../../contracts/channelContract.ts';
import { formatForChannel } from '../../sanitize/formatForChannel.ts';
import type { ChannelPlugin } from '../ChannelPlugin.ts';
import { paceTelegramSend } from '../sendRateLimiter.ts';
import { createTelegramSender } from './createTelegramSender.ts';
import { normalizeTelegramUpdate } from './normalizeTelegramUpdate.ts';
import { approvalCallbackData, readApprovalCallback } from './readApprovalCallback.ts';
import { verifyTelegramSecret } from './verifyTelegramSecret.ts';

const BUTTON_TEXT = { approved: 'Approve', rejected: 'Reject' } as const;

/**
 * Telegram through the Bot API: a webhook signed by its secret-token header, answers by
 * `sendMessage` in the account's parse mode (into the forum topic a message came from),
 * paced per chat and per bot, a typing action while a run works, and approval prompts with
 * inline buttons whose presses come back on the same webhook.
 */
export const telegramPlugin: ChannelPlugin<'telegram'> = {
  type: 'telegram',
  displayName: 'Telegram',
  capabilities: {
    threads: true,
    edits: true,
    typing: true,
    statusNote: true,
    buttons: true,
    maxMessageChars: CHANNEL_TEXT_LIMITS.telegram,
    batchSize: 1,
  },
  dialect: (account) => account.parseMode,
  delivery: () => 'send',
  format: (text, account, limit) => formatForChannel(text, account.parseMode, limit),
  inbound: {
    signedBy: 'X-Telegram-Bot-Api-Secret-Token',
    async verify(request, account, secret) {
      const expected = await secret(account.webhookSecret);
      return verifyTelegramSecret(
        request.headers['x-telegram-bot-api-secret-token'] || undefined,
        expected,
      );
    },
    normalize(body, account) {
      const callback = account.approvals ? readApprovalCallback(body) : null;
      if (callback) {
        return {
          kind: 'approval',
          answer: {
            answerId: callback.callbackQueryId,
            decidedBy: `telegram:${callback.fromId}`,
            action: callback.action,
          },
        };
      }
      // An edit of a message already answered is not a new question: acknowledged, no run.
      return {
        kind: 'messages',
        batch: normalizeTelegramUpdate(body, { edits: 'ignore', media: account.media }),
      };
    },
    responseBody: ({ runs, duplicate }) => ({ ok: true, runs, duplicate }),
  },
  credentials: (account) => [account.botToken],
  createSender(account, [token]) {
    const bot = createTelegramSender({
      token: token ?? '',
      ...(account.apiRoot ? { apiRoot: account.apiRoot } : {}),
    });
    return {
      // Telegram cannot tell a repeated sendMessage from a new one.
      methodFor: () => ({ name: 'sendMessage', dedupes: false }),
      async send(rows, _method, { event }) {
        const row = rows[0]!;
        const conversation = event.conversation;
        const sent = await bot.sendText(conversation.id, row.text, {
          // A Telegram row is never mrkdwn or discord (Slack's, Discord's); were one, it would
          // go out unparsed.
          parseMode: row.format === 'mrkdwn' || row.format === 'discord' ? 'plain' : row.format,
          ...(conversation.threadId ? { threadId: conversation.threadId } : {}),
        });
        return { method: 'sendMessage', externalMessageId: sent.externalMessageId };
      },
      pace: (ctx, key) =>
        paceTelegramSend(ctx.redis, ctx.redisPrefix, {
          projectId: key.projectId,
          accountId: key.accountId,
          chatId: key.conversation.id,
          isGroup: key.conversation.kind === 'group',
        }),
      typing: ({ event }) => bot.sendTyping(event.conversation.id, event.conversation.threadId),
      askApprover: (recipient, prompt) =>
        bot.sendText(recipient, prompt.text, {
          parseMode: 'plain',
          replyMarkup: {
            inline_keyboard: [
              prompt.buttons.map((decision) => ({
                text: BUTTON_TEXT[decision],
                callback_data: approvalCallbackData(prompt.approvalId, decision),
              })),
            ],
          },
        }),
      tellMember: (recipient, text) => bot.sendText(recipient, text, { parseMode: 'plain' }),
      acknowledge: (answer, text) => bot.answerCallback(answer.answerId, text),
    };
  },
  approvals: { subjectPrefix: 'telegram', via: 'telegram' },
  // Harmless twice: setWebhook replaces the bot's webhook with the same URL and secret.
  async register(account, secret, { webhookPath }) {
    if (!account.webhook?.register) return null;
    const url = `${account.webhook.publicUrl}${webhookPath}`;
    const bot = createTelegramSender({
      token: await secret(account.botToken),
      ...(account.apiRoot ? { apiRoot: account.apiRoot } : {}),
    });
    await bot.setWebhook(url, await secret(account.webhookSecret));
    return { url };
  },
};
