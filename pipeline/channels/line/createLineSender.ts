import { HTTPFetchError, messagingApi } from '@line/bot-sdk';
import { AppError, NonRetryableError, RetryAfterError } from '../../errors.ts';
import { connectFailed } from '../connectFailed.ts';
import { retryAfterMs } from '../../retryAfterMs.ts';

/** LINE takes at most this many messages in one reply or push. */
export const LINE_MAX_MESSAGES_PER_CALL = 5;

/** What LINE answered for a send: the ids of the messages it created, in order. */
export type LineSent = { externalMessageIds: string[] };

/** Sends through one LINE channel. Every failure is an {@link AppError}. */
export type LineSender = {
  /**
   * Answers with a webhook's single-use reply token (free of charge, unlike a push). A used
   * or expired token throws {@link NonRetryableError} `LINE_REPLY_TOKEN_INVALID`: push instead.
   */
  reply(replyToken: string, texts: readonly string[]): Promise<LineSent>;
  /**
   * Pushes to a user, group or room id. `retryKey` (a UUID) goes out as `X-Line-Retry-Key`:
   * LINE accepts each key once, so a repeat after a lost answer is answered 409 and comes back
   * as `{ duplicate: true }` with no message sent twice.
   */
  push(
    to: string,
    texts: readonly string[],
    retryKey: string,
  ): Promise<LineSent & { duplicate: boolean }>;
  /** Shows the loading animation in a one-to-one chat (LINE has none for groups). */
  showLoading(userId: string, loadingSeconds?: number): Promise<void>;
};

/** Options of {@link createLineSender}. */
export type LineSenderOptions = {
  /** The channel access token. */
  accessToken: string;
  /**
   * Messaging API root.
   * @defaultValue `https://api.line.me`
   */
  baseUrl?: string | undefined;
  /**
   * Gives up waiting for one call after this long (it may still have been delivered).
   * @defaultValue 15000
   */
  timeoutMs?: number | undefined;
};

/**
 * A LINE sender on the SDK's `messagingApi.MessagingApiClient`. Errors are mapped by how to
 * handle them: 429 → {@link RetryAfterError} `CHANNEL_RATE_LIMITED` (its `Retry-After`, else
 * 1 s); 5xx, timeouts and network failures → retryable `CHANNEL_UNAVAILABLE`; a refused reply
 * token → `LINE_REPLY_TOKEN_INVALID`; any other 4xx → {@link NonRetryableError}
 * `CHANNEL_REJECTED`. More than five texts (or none) in one call throws before sending.
 */
export function createLineSender({
  accessToken,
  baseUrl,
  timeoutMs = 15_000,
}: LineSenderOptions): LineSender {
  const client = new messagingApi.MessagingApiClient({
    channelAccessToken: accessToken,
    ...(baseUrl === undefined ? {} : { baseURL: baseUrl }),
  });
  const call = async <T>(method: string, run: () => Promise<T>): Promise<T> => {
    try {
      return await withTimeout(run(), timeoutMs);
    } catch (error) {
      throw mapLineError(error, method);
    }
  };
  return {
    async reply(replyToken, texts) {
      const messages = toMessages(texts);
      const body = await call('reply', () => client.replyMessage({ replyToken, messages }));
      return { externalMessageIds: body.sentMessages.map((m) => m.id) };
    },
    async push(to, texts, retryKey) {
      const messages = toMessages(texts);
      try {
        const body = await withTimeout(client.pushMessage({ to, messages }, retryKey), timeoutMs);
        return { duplicate: false, externalMessageIds: body.sentMessages.map((m) => m.id) };
      } catch (error) {
        // 409 on a retry key: an earlier attempt whose answer was lost did get through.
        if (error instanceof HTTPFetchError && error.status === 409) {
          return { duplicate: true, externalMessageIds: [] };
        }
        throw mapLineError(error, 'push');
      }
    },
    async showLoading(userId, loadingSeconds = 20) {
      await call('showLoading', () =>
        client.showLoadingAnimation({ chatId: userId, loadingSeconds }),
      );
    },
  };
}

function toMessages(texts: readonly string[]): messagingApi.TextMessage[] {
  if (texts.length === 0 || texts.length > LINE_MAX_MESSAGES_PER_CALL) {
    throw new NonRetryableError(
      'LINE_BATCH_INVALID',
      `LINE takes 1 to ${LINE_MAX_MESSAGES_PER_CALL} messages a call, not ${texts.length}`,
    );
  }
  return texts.map((text) => ({ type: 'text', text }));
}

async function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function mapLineError(error: unknown, method: string): AppError {
  if (!(error instanceof HTTPFetchError)) {
    // fetch reports `fetch failed` and keeps the reason (ECONNREFUSED, ...) in `cause`.
    const cause = error instanceof Error && error.cause instanceof Error ? error.cause.message : '';
    const reason =
      (error instanceof Error ? error.message : String(error)) + (cause && ` (${cause})`);
    // A reply has no retry key: one that may have gone out must not be sent again (a push
    // carries its retry key, so LINE itself drops a repeat of it).
    const code =
      method === 'reply' && !connectFailed(error) ? 'CHANNEL_UNCERTAIN' : 'CHANNEL_UNAVAILABLE';
    return new AppError(code, `LINE ${method} did not complete: ${reason}`, {
      status: 503,
      detail: { method },
    });
  }
  const status = error.status;
  const lineMessage = messageOf(error.body);
  const detail = { method, httpStatus: status, lineMessage };
  if (status === 429 && /monthly limit/i.test(lineMessage)) {
    // The channel's monthly message quota: waiting seconds cannot help, and retrying forever
    // would keep the run's deliver job alive past any deadline.
    return new NonRetryableError('CHANNEL_QUOTA_EXCEEDED', `LINE ${method}: ${lineMessage}`, {
      status: 502,
      detail,
    });
  }
  if (status === 429) {
    const waitMs = retryAfterMs(error.headers.get('retry-after')) ?? 1000;
    return new RetryAfterError('CHANNEL_RATE_LIMITED', `LINE ${method} was rate limited`, waitMs);
  }
  if (status >= 500) {
    return new AppError('CHANNEL_UNAVAILABLE', `LINE ${method} failed: ${status} ${lineMessage}`, {
      status: 503,
      detail,
    });
  }
  if (status === 400 && method === 'reply' && /reply ?token/i.test(lineMessage)) {
    return new NonRetryableError(
      'LINE_REPLY_TOKEN_INVALID',
      `LINE refused the reply token: ${lineMessage}`,
      {
        status: 502,
        detail,
      },
    );
  }
  return new NonRetryableError(
    'CHANNEL_REJECTED',
    `LINE refused ${method}: ${status} ${lineMessage}`,
    {
      status: 502,
      detail,
    },
  );
}

/** LINE's error bodies are `{"message": "...", "details": [...]}`; anything else is cut short. */
function messageOf(body: string): string {
  try {
    const parsed: unknown = JSON.parse(body);
    if (typeof parsed === 'object' && parsed !== null && 'message' in parsed) {
      return String(parsed.message).slice(0, 500);
    }
  } catch {
    // Not JSON (a proxy's HTML page): fall through to the raw text.
  }
  return body.slice(0, 200);
}
