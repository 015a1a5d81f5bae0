import { DiscordAPIError, HTTPError, RateLimitError, REST } from '@discordjs/rest';
import { Routes, type APIMessage, type RESTGetAPIGatewayBotResult } from 'discord-api-types/v10';
import { AppError, NonRetryableError, RetryAfterError } from '../../errors.ts';
import { connectFailed } from '../connectFailed.ts';

/** What one message carries, as `POST /channels/{id}/messages` takes it. */
export type DiscordMessageBody = {
  /** Discord markdown, already escaped; at most 2000 characters. */
  content?: string;
  embeds?: Record<string, unknown>[];
  components?: Record<string, unknown>[];
  /** The message this one answers (shown as a reply, in its channel or thread). */
  replyTo?: string | undefined;
  /**
   * At most 25 characters. Sent with `enforce_nonce`, so Discord answers a repeat of it from
   * the same bot within a few minutes with the message it already made, and makes no second.
   */
  nonce?: string;
};

/** Sends as one Discord bot. Every failure is an {@link AppError} that never holds the token. */
export type DiscordSender = {
  /** Creates a message in a channel (a thread, a DM); returns its id. */
  createMessage(
    channelId: string,
    body: DiscordMessageBody,
  ): Promise<{ externalMessageId: string }>;
  /** Shows "typing…" in a channel (Discord clears it after 10 s or at the bot's next message). */
  typing(channelId: string): Promise<void>;
  /** The DM channel with a user (`POST /users/@me/channels`; Discord gives the same one again). */
  openDm(userId: string): Promise<string>;
  /** `GET /gateway/bot`: where to connect and how many shards Discord recommends. */
  gatewayBot(): Promise<RESTGetAPIGatewayBotResult>;
  /** The client itself, for the Gateway manager (which reads `GET /gateway/bot` through it). */
  rest: REST;
};

/** Options of {@link createDiscordSender}. */
export type DiscordSenderOptions = {
  token: string;
  /**
   * REST API root without its version.
   * @defaultValue `https://discord.com/api`
   */
  apiBaseUrl?: string | undefined;
  /**
   * Gives up on one call after this long (it may still have been made).
   * @defaultValue 15000
   */
  timeoutMs?: number | undefined;
  /**
   * The longest rate-limit wait the client sits out itself (a bucket's reset, a 429's
   * `retry_after`); a longer one is a {@link RetryAfterError}, so the job is delayed instead.
   * @defaultValue 10000
   */
  maxWaitMs?: number | undefined;
};

/**
 * A Discord sender on `@discordjs/rest`, which keeps Discord's per-route rate-limit buckets
 * (from the `X-RateLimit-*` headers) and, on a 429, waits its `Retry-After` and sends the
 * same request again: a 429 is a request Discord did not act on, so that is still one
 * message. A wait over `maxWaitMs` is not sat out: it becomes a {@link RetryAfterError}
 * `CHANNEL_RATE_LIMITED`. Messages go out with `allowed_mentions: { parse: [] }` (no text can
 * ping `@everyone`, a role or a user; the user answered is still notified of the reply) and,
 * given a nonce, `enforce_nonce`. The client repeats a call that timed out, was reset or got a
 * 5xx once at once (with the same nonce, so Discord drops it if the first arrived). Then: a 5xx
 * → retryable `CHANNEL_UNAVAILABLE`; a connection refused → `CHANNEL_UNAVAILABLE`; a timeout or
 * a connection lost after sending → `CHANNEL_UNCERTAIN` (never repeated); any other 4xx
 * (`Missing Access`, `Unknown Channel`, a bad token, a message too long) →
 * {@link NonRetryableError} `CHANNEL_REJECTED`.
 */
export function createDiscordSender({
  token,
  apiBaseUrl,
  timeoutMs = 15_000,
  maxWaitMs = 10_000,
}: DiscordSenderOptions): DiscordSender {
  const rest = new REST({
    ...(apiBaseUrl === undefined ? {} : { api: apiBaseUrl.replace(/\/+$/, '') }),
    retries: 1,
    timeout: timeoutMs,
    rejectOnRateLimit: (limit) => limit.retryAfter > maxWaitMs,
  }).setToken(token);
  const call = async <T>(method: string, run: () => Promise<unknown>): Promise<T> => {
    try {
      return (await run()) as T;
    } catch (error) {
      throw mapDiscordError(error, method, token);
    }
  };
  return {
    rest,
    async createMessage(channelId, body) {
      const message = await call<APIMessage>('createMessage', () =>
        rest.post(Routes.channelMessages(channelId), {
          body: {
            ...(body.content === undefined ? {} : { content: body.content }),
            ...(body.embeds === undefined ? {} : { embeds: body.embeds }),
            ...(body.components === undefined ? {} : { components: body.components }),
            allowed_mentions: { parse: [], replied_user: true },
            ...(body.replyTo === undefined
              ? {}
              : { message_reference: { message_id: body.replyTo, fail_if_not_exists: false } }),
            ...(body.nonce === undefined ? {} : { nonce: body.nonce, enforce_nonce: true }),
          },
        }),
      );
      return { externalMessageId: message.id };
    },
    async typing(channelId) {
      await call('typing', () => rest.post(Routes.channelTyping(channelId)));
    },
    async openDm(userId) {
      const channel = await call<{ id: string }>('openDm', () =>
        rest.post(Routes.userChannels(), { body: { recipient_id: userId } }),
      );
      return channel.id;
    },
    gatewayBot: () =>
      call<RESTGetAPIGatewayBotResult>('gatewayBot', () => rest.get(Routes.gatewayBot())),
  };
}

/** Turns whatever the REST client threw into an AppError, with the token taken out of any text. */
export function mapDiscordError(error: unknown, method: string, token: string): AppError {
  if (error instanceof AppError) return error;
  const redact = (text: string) => (token === '' ? text : text.split(token).join('[REDACTED]'));
  if (error instanceof RateLimitError) {
    const ms = Math.max(1000, Math.ceil(error.retryAfter));
    return new RetryAfterError(
      'CHANNEL_RATE_LIMITED',
      `Discord ${method} was rate limited: retry after ${Math.ceil(ms / 1000)} s`,
      ms,
    );
  }
  if (error instanceof DiscordAPIError) {
    const detail = { method, status: error.status, code: String(error.code) };
    if (error.status >= 500) {
      return new AppError('CHANNEL_UNAVAILABLE', `Discord ${method} failed: ${error.status}`, {
        status: 503,
        detail,
      });
    }
    return new NonRetryableError(
      'CHANNEL_REJECTED',
      `Discord refused ${method}: ${error.status} ${redact(error.message)}`,
      { status: 502, detail },
    );
  }
  if (error instanceof HTTPError) {
    return new AppError('CHANNEL_UNAVAILABLE', `Discord ${method} failed: ${error.status}`, {
      status: 503,
      detail: { method, status: error.status },
    });
  }
  const reason = redact(error instanceof Error ? error.message : String(error));
  // A call that may have reached Discord is not repeated past its nonce's few minutes.
  const code = connectFailed(error) ? 'CHANNEL_UNAVAILABLE' : 'CHANNEL_UNCERTAIN';
  return new AppError(code, `Discord ${method} did not complete: ${reason}`, {
    status: 503,
    detail: { method },
  });
}
