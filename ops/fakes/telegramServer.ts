import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** One `sendMessage` the fake accepted, with the fields as the client sent them. */
export type TelegramSentMessage = {
  /** The bot token from the request path. */
  token: string;
  chat_id: string;
  text: string;
  parse_mode: string | undefined;
  message_thread_id: number | undefined;
  /** `reply_markup` as sent (an inline keyboard, say), parsed from JSON when sent as text. */
  reply_markup: unknown;
  /** The `message_id` the fake answered with. */
  message_id: number;
};

/** One `answerCallbackQuery` the fake accepted. */
export type TelegramCallbackAnswer = {
  token: string;
  callback_query_id: string;
  text: string | undefined;
};

/** One `sendChatAction` the fake accepted. */
export type TelegramChatAction = {
  token: string;
  chat_id: string;
  action: string;
  message_thread_id: number | undefined;
};

/** One `setWebhook` the fake accepted. */
export type TelegramWebhookSet = {
  token: string;
  url: string;
  secret_token: string | undefined;
};

/** Any request that reached the fake, failed or not. */
export type TelegramRequest = {
  /** Bot API method from the path, e.g. `sendMessage`. */
  method: string;
  token: string;
  /** The parameters, from a JSON or form body or the query string. */
  params: Record<string, unknown>;
  /** The status the fake answered with. */
  status: number;
};

/** A scripted failure for {@link TelegramServer.failNext}. */
export type TelegramFailure = {
  /** HTTP status and `error_code`: 429, 500, 400, 403, ... */
  status: number;
  /** For 429: seconds put in `parameters.retry_after` (default 1). */
  retryAfter?: number;
  /** Overrides the Bot API's usual `description` for the status. */
  description?: string;
  /** Only calls of this method fail (others pass through untouched). */
  method?: string;
  /** Only calls whose `text` holds this fail, so a test can refuse one chunk of several. */
  textIncludes?: string;
  /** The call takes effect (a message is recorded) but the answer is the failure: a lost answer. */
  delivered?: boolean;
  /** No answer at all: the connection is dropped (after the call took effect, with `delivered`). */
  hangUp?: boolean;
};

/** A local stand-in for the Telegram Bot API, speaking its wire format. */
export type TelegramServer = {
  /** Pass as telegraf's `apiRoot` (no trailing slash). */
  apiRoot: string;
  /** Every accepted `sendMessage`, in order. */
  sent: TelegramSentMessage[];
  /** Every accepted `sendChatAction`, in order. */
  actions: TelegramChatAction[];
  /** Every accepted `answerCallbackQuery`, in order. */
  callbackAnswers: TelegramCallbackAnswer[];
  /** Every accepted `setWebhook`, in order. */
  webhooks: TelegramWebhookSet[];
  /** Every request, including refused ones. */
  requests: TelegramRequest[];
  /**
   * The path of every request that reached the fake, a method's or not (a file download,
   * `/file/bot<token>/<file_path>`, is answered 404 and listed only here).
   */
  paths: string[];
  /** The next `n` matching calls answer with `failure` instead of succeeding. */
  failNext(n: number, failure: TelegramFailure): void;
  /** Stops the server and drops open connections. */
  close(): Promise<void>;
};

/** Options of {@link startTelegramServer}. */
export type TelegramServerOptions = {
  /** When set, any other token is answered 401 Unauthorized, as Telegram does. */
  token?: string;
};

/**
 * The text Telegram counts its 4096 on: what is left after entity parsing (tags and markup
 * removed, entities and escapes decoded), in UTF-16 code units.
 */
function shownText(text: string, parseMode: string | undefined): string {
  if (parseMode === 'HTML') {
    return text
      .replace(/<[^>]*>/g, '')
      .replace(/&(lt|gt|quot|amp|#\d+|#x[0-9a-f]+);/gi, (_, name: string) => {
        const named: Record<string, string> = { lt: '<', gt: '>', quot: '"', amp: '&' };
        const lower = name.toLowerCase();
        if (lower.startsWith('#x')) return String.fromCodePoint(parseInt(lower.slice(2), 16));
        if (lower.startsWith('#')) return String.fromCodePoint(Number(lower.slice(1)));
        return named[lower] ?? '';
      });
  }
  if (parseMode === 'MarkdownV2') {
    return text
      .replace(/```[^\n`]*\n/g, '')
      .replace(/\n?```/g, '')
      .replace(/\\(.)|[`*_~|]/gs, (_, escaped: string | undefined) => escaped ?? '');
  }
  return text;
}

const BOT = { id: 7_000_000_001, is_bot: true, first_name: 'Fake Bot', username: 'fake_bot' };
const MAX_TEXT = 4096;

/**
 * Starts a fake Bot API on 127.0.0.1 (a free port). It answers `getMe`, `sendMessage`,
 * `sendChatAction`, `answerCallbackQuery`, `setWebhook` and `deleteWebhook` like Telegram does:
 * `{ ok: true, result }`, or `{ ok: false, error_code, description, parameters? }` with the
 * matching HTTP status (an empty text, one over 4096 after entity parsing, an unknown `parse_mode`, a non-numeric
 * chat id are refused with Telegram's own descriptions; a callback query is answered once, a
 * second answer is refused as Telegram refuses a stale one). Positive chat ids are private
 * chats, negative ones supergroups.
 *
 * @example
 * const tg = await startTelegramServer();
 * tg.failNext(1, { status: 429, retryAfter: 3 });
 * // ... new Telegram(token, { apiRoot: tg.apiRoot }).sendMessage(...) → 429, then 200
 * await tg.close();
 */
export async function startTelegramServer(
  options: TelegramServerOptions = {},
): Promise<TelegramServer> {
  const sent: TelegramSentMessage[] = [];
  const actions: TelegramChatAction[] = [];
  const callbackAnswers: TelegramCallbackAnswer[] = [];
  const requests: TelegramRequest[] = [];
  const paths: string[] = [];
  const webhooks: TelegramWebhookSet[] = [];
  const failures: TelegramFailure[] = [];
  let nextMessageId = 100;

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    paths.push(url.pathname);
    const match = /^\/bot([^/]+)\/([A-Za-z]+)$/.exec(url.pathname);
    if (!match) return answer(res, 404, { ok: false, error_code: 404, description: 'Not Found' });
    const token = decodeURIComponent(match[1]!);
    const method = match[2]!;
    const params = { ...Object.fromEntries(url.searchParams), ...(await readParams(req)) };
    const record = (status: number) => requests.push({ method, token, params, status });

    if (options.token !== undefined && token !== options.token) {
      record(401);
      return answer(res, 401, { ok: false, error_code: 401, description: 'Unauthorized' });
    }
    const index = failures.findIndex(
      (f) =>
        (f.method === undefined || f.method === method) &&
        (f.textIncludes === undefined ||
          (typeof params.text === 'string' && params.text.includes(f.textIncludes))),
    );
    const failure = index === -1 ? undefined : failures.splice(index, 1)[0];
    if (failure && !failure.delivered) {
      record(failure.status);
      if (failure.hangUp) return void req.socket.destroy();
      return answer(res, failure.status, failureBody(failure));
    }

    const result = perform(method, token, params);
    if (failure?.hangUp) {
      record(result.status);
      return void req.socket.destroy();
    }
    if (failure) {
      record(failure.status);
      return answer(res, failure.status, failureBody(failure));
    }
    record(result.status);
    return answer(res, result.status, result.body);
  };

  const perform = (
    method: string,
    token: string,
    params: Record<string, unknown>,
  ): { status: number; body: unknown } => {
    const ok = (result: unknown) => ({ status: 200, body: { ok: true, result } });
    const bad = (description: string, status = 400) => ({
      status,
      body: { ok: false, error_code: status, description },
    });
    const threadId =
      params.message_thread_id === undefined ? undefined : Number(params.message_thread_id);
    switch (method) {
      case 'getMe':
        return ok({ ...BOT, can_join_groups: true, can_read_all_group_messages: false });
      case 'setWebhook': {
        const url = typeof params.url === 'string' ? params.url : '';
        if (!url.startsWith('https://'))
          return bad('Bad Request: bad webhook: HTTPS url must be provided for webhook');
        const secret = params.secret_token;
        if (
          secret !== undefined &&
          (typeof secret !== 'string' || !/^[A-Za-z0-9_-]{1,256}$/.test(secret))
        )
          return bad('Bad Request: secret token contains unallowed characters');
        webhooks.push({ token, url, secret_token: secret });
        return ok(true);
      }
      case 'deleteWebhook':
        return ok(true);
      case 'sendChatAction': {
        const chat = chatOf(params.chat_id);
        if (!chat) return bad('Bad Request: chat not found');
        actions.push({
          token,
          chat_id: String(params.chat_id),
          action: String(params.action),
          message_thread_id: threadId,
        });
        return ok(true);
      }
      case 'answerCallbackQuery': {
        const id = params.callback_query_id;
        if (typeof id !== 'string' && typeof id !== 'number')
          return bad(
            'Bad Request: query is too old and response timeout expired or query ID is invalid',
          );
        if (callbackAnswers.some((a) => a.callback_query_id === String(id)))
          return bad(
            'Bad Request: query is too old and response timeout expired or query ID is invalid',
          );
        callbackAnswers.push({
          token,
          callback_query_id: String(id),
          text: typeof params.text === 'string' ? params.text : undefined,
        });
        return ok(true);
      }
      case 'sendMessage': {
        const chat = chatOf(params.chat_id);
        if (!chat) return bad('Bad Request: chat not found');
        const text = typeof params.text === 'string' ? params.text : '';
        if (text.trim() === '') return bad('Bad Request: message text is empty');
        const parseMode =
          params.parse_mode === undefined || typeof params.parse_mode === 'string'
            ? params.parse_mode
            : '';
        if (parseMode !== undefined && !['HTML', 'MarkdownV2', 'Markdown'].includes(parseMode)) {
          return bad('Bad Request: unsupported parse_mode');
        }
        if (shownText(text, parseMode).length > MAX_TEXT) {
          return bad('Bad Request: message is too long');
        }
        const messageId = nextMessageId++;
        sent.push({
          token,
          chat_id: String(params.chat_id),
          text,
          parse_mode: parseMode,
          message_thread_id: threadId,
          reply_markup:
            typeof params.reply_markup === 'string'
              ? (JSON.parse(params.reply_markup) as unknown)
              : params.reply_markup,
          message_id: messageId,
        });
        return ok({
          message_id: messageId,
          from: BOT,
          chat,
          date: Math.floor(Date.now() / 1000),
          text,
          ...(threadId === undefined
            ? {}
            : { message_thread_id: threadId, is_topic_message: true }),
        });
      }
      default:
        return bad('Not Found: method not found', 404);
    }
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      answer(res, 500, { ok: false, error_code: 500, description: String(error) });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    apiRoot: `http://127.0.0.1:${port}`,
    sent,
    actions,
    callbackAnswers,
    webhooks,
    requests,
    paths,
    failNext(n, failure) {
      for (let i = 0; i < n; i++) failures.push(failure);
    },
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
        server.closeAllConnections();
      }),
  };
}

/** The error body the Bot API sends for a status. */
function failureBody(failure: TelegramFailure): unknown {
  if (failure.status === 429) {
    const seconds = failure.retryAfter ?? 1;
    return {
      ok: false,
      error_code: 429,
      description: failure.description ?? `Too Many Requests: retry after ${seconds}`,
      parameters: { retry_after: seconds },
    };
  }
  const descriptions: Record<number, string> = {
    400: 'Bad Request',
    401: 'Unauthorized',
    403: 'Forbidden: bot was blocked by the user',
    500: 'Internal Server Error',
    502: 'Bad Gateway',
  };
  return {
    ok: false,
    error_code: failure.status,
    description: failure.description ?? descriptions[failure.status] ?? 'Error',
  };
}

/** Telegram's `Chat` for an id: positive ids are users, negative ones supergroups. */
function chatOf(chatId: unknown): Record<string, unknown> | undefined {
  const id = Number(chatId);
  if (chatId === undefined || chatId === '' || !Number.isSafeInteger(id)) return undefined;
  return id > 0
    ? { id, first_name: 'Test', username: 'test_user', type: 'private' }
    : { id, title: 'Test Group', type: 'supergroup' };
}

async function readParams(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  const raw = Buffer.concat(chunks).toString('utf8');
  if (raw === '') return {};
  const type = req.headers['content-type'] ?? '';
  if (type.includes('application/x-www-form-urlencoded')) {
    return Object.fromEntries(new URLSearchParams(raw));
  }
  const parsed: unknown = JSON.parse(raw);
  return typeof parsed === 'object' && parsed !== null ? (parsed as Record<string, unknown>) : {};
}

function answer(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}
