import {
  LogLevel,
  WebAPIHTTPError,
  WebAPIPlatformError,
  WebAPIRateLimitedError,
  WebAPIRequestError,
  WebClient,
  type KnownBlock,
} from '@slack/web-api';
import { AppError, NonRetryableError, RetryAfterError } from '../../errors.ts';
import { connectFailed } from '../connectFailed.ts';

/** Sends as one Slack bot. Every failure is an {@link AppError} that never holds the token. */
export type SlackSender = {
  /**
   * `chat.postMessage` into `channel`, in the thread `threadTs` when given. `text` is mrkdwn,
   * already escaped; with `blocks` it is the notification fallback. Returns the message's `ts`.
   */
  postMessage(
    channel: string,
    text: string,
    opts?: { threadTs?: string | undefined; blocks?: KnownBlock[] | undefined },
  ): Promise<{ externalMessageId: string }>;
};

/** Options of {@link createSlackSender}. */
export type SlackSenderOptions = {
  /** The bot token (`xoxb-…`). */
  token: string;
  /**
   * Web API root, with its trailing `/api/`.
   * @defaultValue `https://slack.com/api/`
   */
  apiBaseUrl?: string | undefined;
  /**
   * Gives up on one call after this long (it may still have been delivered).
   * @defaultValue 15000
   */
  timeoutMs?: number | undefined;
};

/** Slack errors saying the call may have done part of its work before failing. */
const MAYBE_DONE = new Set(['fatal_error', 'internal_error']);
/** Slack errors saying it did nothing and will take the same call later. */
const NOT_NOW = new Set(['service_unavailable', 'team_added_to_org', 'ratelimited']);

/**
 * A Slack sender on `@slack/web-api`'s `WebClient`, with the client's own retries off and
 * rate-limited calls rejected, so a repeat is the ledger's decision (Slack cannot drop a
 * repeated `chat.postMessage`). Errors are mapped by how to handle them: a 429 →
 * {@link RetryAfterError} `CHANNEL_RATE_LIMITED` after its `Retry-After`; a 5xx,
 * `service_unavailable` and a failure to connect → retryable `CHANNEL_UNAVAILABLE`; a timeout,
 * a connection lost after the request went out, `fatal_error` or `internal_error` (Slack says
 * part of the call may have happened) → `CHANNEL_UNCERTAIN` (never repeated); any other
 * `ok: false` (`channel_not_found`, `not_in_channel`, `invalid_auth`, `msg_too_long`, …) →
 * {@link NonRetryableError} `CHANNEL_REJECTED`.
 */
export function createSlackSender({
  token,
  apiBaseUrl,
  timeoutMs = 15_000,
}: SlackSenderOptions): SlackSender {
  const client = new WebClient(token, {
    ...(apiBaseUrl === undefined ? {} : { slackApiUrl: withApiSlash(apiBaseUrl) }),
    retryConfig: { retries: 0 },
    rejectRateLimitedCalls: true,
    timeout: timeoutMs,
    logLevel: LogLevel.ERROR,
  });
  return {
    async postMessage(channel, text, opts = {}) {
      try {
        const result = await client.chat.postMessage({
          channel,
          text,
          mrkdwn: true,
          ...(opts.threadTs === undefined ? {} : { thread_ts: opts.threadTs }),
          ...(opts.blocks === undefined ? {} : { blocks: opts.blocks }),
        });
        return { externalMessageId: result.ts ?? '' };
      } catch (error) {
        throw mapSlackError(error, 'chat.postMessage', token);
      }
    },
  };
}

/** The WebClient joins method names onto its root: it must end in a slash. */
function withApiSlash(url: string): string {
  return url.endsWith('/') ? url : `${url}/`;
}

/** Turns whatever the WebClient threw into an AppError, with the token taken out of any text. */
function mapSlackError(error: unknown, method: string, token: string): AppError {
  const redact = (text: string) => (token === '' ? text : text.split(token).join('[REDACTED]'));
  if (error instanceof WebAPIRateLimitedError) {
    const seconds = Math.max(1, error.retryAfter);
    return new RetryAfterError(
      'CHANNEL_RATE_LIMITED',
      `Slack ${method} was rate limited: retry after ${seconds} s`,
      seconds * 1000,
    );
  }
  if (error instanceof WebAPIPlatformError) {
    const code = error.data.error;
    const detail = { method, error: code };
    if (MAYBE_DONE.has(code)) {
      return new AppError('CHANNEL_UNCERTAIN', `Slack ${method} failed part-way: ${code}`, {
        status: 503,
        detail,
      });
    }
    if (NOT_NOW.has(code)) {
      return new AppError('CHANNEL_UNAVAILABLE', `Slack ${method} failed: ${code}`, {
        status: 503,
        detail,
      });
    }
    return new NonRetryableError('CHANNEL_REJECTED', `Slack refused ${method}: ${code}`, {
      status: 502,
      detail,
    });
  }
  if (error instanceof WebAPIHTTPError) {
    const detail = { method, status: error.statusCode };
    if (error.statusCode >= 500) {
      return new AppError('CHANNEL_UNAVAILABLE', `Slack ${method} failed: ${error.statusCode}`, {
        status: 503,
        detail,
      });
    }
    return new NonRetryableError(
      'CHANNEL_REJECTED',
      `Slack refused ${method}: HTTP ${error.statusCode}`,
      { status: 502, detail },
    );
  }
  const original = error instanceof WebAPIRequestError ? error.original : error;
  const reason = redact(original instanceof Error ? original.message : String(original));
  // A call that may have reached Slack is not repeated: Slack would post a second copy.
  const code = connectFailed(error) ? 'CHANNEL_UNAVAILABLE' : 'CHANNEL_UNCERTAIN';
  return new AppError(code, `Slack ${method} did not complete: ${reason}`, {
    status: 503,
    detail: { method },
  });
}
