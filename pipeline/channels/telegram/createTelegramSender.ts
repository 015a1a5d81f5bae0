import { Telegram, TelegramError } from 'telegraf';
import { AppError, NonRetryableError, RetryAfterError } from '../../errors.ts';
import { connectFailed } from '../connectFailed.ts';

// telegraf types its signal as the old `abort-controller` polyfill's; node-fetch, which it
// calls, accepts Node's own AbortSignal (it checks the constructor name only).
type TelegrafSignal = NonNullable<NonNullable<Parameters<Telegram['callApi']>[2]>['signal']>;

/** How a message's text is marked up; `plain` sends no `parse_mode`. */
export type TelegramParseMode = 'HTML' | 'MarkdownV2' | 'plain';

/** Sends to one Telegram bot. Every failure is an {@link AppError} that never holds the token. */
export type TelegramSender = {
  /**
   * `sendMessage`; `threadId` targets a forum topic, `replyMarkup` is sent as `reply_markup`
   * (an inline keyboard, say). Returns Telegram's `message_id`.
   */
  sendText(
    chatId: string,
    text: string,
    opts: {
      parseMode: TelegramParseMode;
      threadId?: string | undefined;
      replyMarkup?: unknown;
    },
  ): Promise<{ externalMessageId: string }>;
  /** `sendChatAction` with `typing`: the indicator shows for about five seconds. */
  sendTyping(chatId: string, threadId?: string): Promise<void>;
  /** `answerCallbackQuery`: `text` shows to the user who pressed the button. */
  answerCallback(callbackQueryId: string, text: string): Promise<void>;
  /** `setWebhook`: Telegram posts updates to `url`, with `secretToken` in its secret header. */
  setWebhook(url: string, secretToken: string): Promise<void>;
};

/** Options of {@link createTelegramSender}. */
export type TelegramSenderOptions = {
  /** The bot token from BotFather. */
  token: string;
  /**
   * Bot API server root.
   * @defaultValue `https://api.telegram.org`
   */
  apiRoot?: string | undefined;
  /**
   * Gives up on one call after this long (it may still have been delivered).
   * @defaultValue 15000
   */
  timeoutMs?: number | undefined;
};

/**
 * A Telegram sender on telegraf's `Telegram` client. Errors are mapped by how to handle them:
 * 429 → {@link RetryAfterError} `CHANNEL_RATE_LIMITED` after Telegram's `retry_after`;
 * 5xx and failures to connect → retryable `CHANNEL_UNAVAILABLE`; a timeout or a connection
 * lost after the request may have gone out → `CHANNEL_UNCERTAIN` (never repeated); any other refusal
 * (bad chat, blocked bot, bad markup, bad token) → {@link NonRetryableError} `CHANNEL_REJECTED`.
 */
export function createTelegramSender({
  token,
  apiRoot,
  timeoutMs = 15_000,
}: TelegramSenderOptions): TelegramSender {
  const telegram = new Telegram(token, apiRoot === undefined ? {} : { apiRoot });
  const call = async <T>(what: string, run: (signal: TelegrafSignal) => Promise<T>): Promise<T> => {
    try {
      return await run(AbortSignal.timeout(timeoutMs) as unknown as TelegrafSignal);
    } catch (error) {
      throw mapTelegramError(error, what, token);
    }
  };
  return {
    async sendText(chatId, text, { parseMode, threadId, replyMarkup }) {
      const message = await call('sendMessage', (signal) =>
        telegram.callApi(
          'sendMessage',
          {
            chat_id: chatId,
            text,
            ...(parseMode === 'plain' ? {} : { parse_mode: parseMode }),
            ...(threadId === undefined ? {} : { message_thread_id: Number(threadId) }),
            // The caller builds the markup; telegraf's own type for it is not ours to mirror.
            ...(replyMarkup === undefined ? {} : { reply_markup: replyMarkup as never }),
          },
          { signal },
        ),
      );
      return { externalMessageId: String(message.message_id) };
    },
    async sendTyping(chatId, threadId) {
      await call('sendChatAction', (signal) =>
        telegram.callApi(
          'sendChatAction',
          {
            chat_id: chatId,
            action: 'typing',
            ...(threadId === undefined ? {} : { message_thread_id: Number(threadId) }),
          },
          { signal },
        ),
      );
    },
    async answerCallback(callbackQueryId, text) {
      await call('answerCallbackQuery', (signal) =>
        telegram.callApi(
          'answerCallbackQuery',
          { callback_query_id: callbackQueryId, text: text.slice(0, 200) },
          { signal },
        ),
      );
    },
    async setWebhook(url, secretToken) {
      await call('setWebhook', (signal) =>
        telegram.callApi('setWebhook', { url, secret_token: secretToken }, { signal }),
      );
    },
  };
}

/**
 * Turns whatever telegraf threw into an AppError. The original error is not kept as `cause`:
 * telegraf puts the token in request URLs, and some of its errors (a non-JSON answer, a
 * network failure on a token it does not recognise) carry that URL unredacted.
 */
function mapTelegramError(error: unknown, method: string, token: string): AppError {
  const redact = (text: string) => (token === '' ? text : text.split(token).join('[REDACTED]'));
  if (error instanceof TelegramError) {
    const status = error.code;
    const description = redact(error.description);
    const detail = { method, errorCode: status, description };
    if (status === 429) {
      const seconds = error.parameters?.retry_after ?? 1;
      return new RetryAfterError(
        'CHANNEL_RATE_LIMITED',
        `Telegram ${method} was rate limited: retry after ${seconds} s`,
        seconds * 1000,
      );
    }
    if (status >= 500) {
      return new AppError(
        'CHANNEL_UNAVAILABLE',
        `Telegram ${method} failed: ${status} ${description}`,
        {
          status: 503,
          detail,
        },
      );
    }
    return new NonRetryableError(
      'CHANNEL_REJECTED',
      `Telegram refused ${method}: ${status} ${description}`,
      {
        status: 502,
        detail,
      },
    );
  }
  const reason = redact(error instanceof Error ? error.message : String(error));
  // Telegram has no idempotency key: a call that may have reached it is not to be repeated.
  // An answer that is not the Bot API's JSON came from something in front of it (a proxy's
  // error page): Telegram did not take the call, so it can be repeated.
  const notTelegram = (error as { type?: unknown } | null)?.type === 'invalid-json';
  const code = connectFailed(error) || notTelegram ? 'CHANNEL_UNAVAILABLE' : 'CHANNEL_UNCERTAIN';
  return new AppError(code, `Telegram ${method} did not complete: ${reason}`, {
    status: 503,
    detail: { method },
  });
}
