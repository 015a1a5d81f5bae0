import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** A message object as LINE receives it (`{ type: 'text', text }` for text). */
export type LineMessageObject = { type: string; text?: string; [key: string]: unknown };

/** One reply the fake accepted. */
export type LineReply = {
  replyToken: string;
  messages: LineMessageObject[];
  /** The `text` of each message, for short assertions. */
  texts: string[];
  /** The bearer token the request carried. */
  accessToken: string;
  /** The `Authorization` header as sent (`Bearer …`). */
  authorization: string;
};

/** One push the fake accepted. */
export type LinePush = {
  to: string;
  messages: LineMessageObject[];
  texts: string[];
  /** The `X-Line-Retry-Key` header, if sent. */
  retryKey: string | undefined;
  accessToken: string;
  authorization: string;
};

/** One loading animation the fake accepted. */
export type LineLoading = { chatId: string; loadingSeconds: number | undefined };

/** Any request that reached the fake, failed or not. */
export type LineRequest = {
  method: string;
  path: string;
  headers: IncomingMessage['headers'];
  body: unknown;
  /** The status the fake answered with. */
  status: number;
};

/** A scripted failure for {@link LineServer.failNext}. */
export type LineFailure = {
  /** HTTP status: 429, 500, 400, 401, ... */
  status: number;
  /** For 429: seconds put in a `Retry-After` header (LINE itself usually sends none). */
  retryAfter?: number;
  /** Overrides the body's `message`. */
  message?: string;
  /** Only requests to this path fail, e.g. `/v2/bot/message/push`. */
  path?: string;
  /**
   * The call takes effect (recorded, reply token spent, retry key accepted) but the answer
   * is the failure: an answer lost on the way back.
   */
  delivered?: boolean;
};

/** A local stand-in for the LINE Messaging API, speaking its wire format. */
export type LineServer = {
  /** Pass as the SDK's `baseURL` (no trailing slash). */
  baseUrl: string;
  replies: LineReply[];
  pushes: LinePush[];
  loadings: LineLoading[];
  requests: LineRequest[];
  /** The next `n` matching requests answer with `failure` instead of succeeding. */
  failNext(n: number, failure: LineFailure): void;
  /** Makes a reply token unusable, as if its minute had run out. */
  expireReplyToken(replyToken: string): void;
  /** Stops the server and drops open connections. */
  close(): Promise<void>;
};

/** Options of {@link startLineServer}. */
export type LineServerOptions = {
  /** When set, any other bearer token is answered 401, as LINE does. */
  accessToken?: string;
};

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const MAX_MESSAGES = 5;
const MAX_TEXT = 5000;

type Answer = { status: number; body: unknown; headers?: Record<string, string> };

/**
 * Starts a fake Messaging API on 127.0.0.1 (a free port) for `POST /v2/bot/message/reply`,
 * `/v2/bot/message/push` and `/v2/bot/chat/loading/start`. Like LINE: a reply token works
 * once (again, or expired → 400 `{"message":"Invalid reply token"}`); a push whose
 * `X-Line-Retry-Key` was accepted before is answered 409 with `x-line-accepted-request-id`
 * and sends nothing; sends answer `{ sentMessages: [{ id, quoteToken }] }`; more than five
 * messages or a text over 5000 characters is a 400 with `details`; every answer carries
 * `x-line-request-id`.
 *
 * @example
 * const line = await startLineServer();
 * // new messagingApi.MessagingApiClient({ channelAccessToken, baseURL: line.baseUrl })
 * expect(line.pushes[0]?.retryKey).toBe(key);
 * await line.close();
 */
export async function startLineServer(options: LineServerOptions = {}): Promise<LineServer> {
  const replies: LineReply[] = [];
  const pushes: LinePush[] = [];
  const loadings: LineLoading[] = [];
  const requests: LineRequest[] = [];
  const failures: LineFailure[] = [];
  const spentTokens = new Set<string>();
  const acceptedKeys = new Map<string, { requestId: string; sentMessages: unknown[] }>();
  let nextMessageId = 500_000_000_000_000;

  const sentMessages = (count: number) =>
    Array.from({ length: count }, () => ({
      id: String(nextMessageId++),
      quoteToken: randomUUID().replaceAll('-', ''),
    }));

  const perform = (
    path: string,
    requestId: string,
    headers: IncomingMessage['headers'],
    body: Record<string, unknown>,
  ): Answer => {
    const authorization = headers.authorization ?? '';
    const caller = { accessToken: authorization.replace(/^Bearer /, ''), authorization };
    switch (path) {
      case '/v2/bot/message/reply': {
        const invalid = checkMessages(body.messages);
        if (invalid) return invalid;
        const replyToken = typeof body.replyToken === 'string' ? body.replyToken : '';
        if (replyToken === '' || spentTokens.has(replyToken)) {
          return { status: 400, body: { message: 'Invalid reply token' } };
        }
        spentTokens.add(replyToken);
        const messages = body.messages as LineMessageObject[];
        replies.push({ replyToken, messages, texts: textsOf(messages), ...caller });
        return { status: 200, body: { sentMessages: sentMessages(messages.length) } };
      }
      case '/v2/bot/message/push': {
        const header = headers['x-line-retry-key'];
        const retryKey = Array.isArray(header) ? header[0] : header;
        if (retryKey !== undefined && !UUID.test(retryKey)) {
          return {
            status: 400,
            body: { message: 'The value of the X-Line-Retry-Key header is invalid' },
          };
        }
        const previous = retryKey === undefined ? undefined : acceptedKeys.get(retryKey);
        if (previous) {
          return {
            status: 409,
            body: {
              message: 'The retry key is already accepted',
              sentMessages: previous.sentMessages,
            },
            headers: { 'x-line-accepted-request-id': previous.requestId },
          };
        }
        const invalid = checkMessages(body.messages);
        if (invalid) return invalid;
        if (typeof body.to !== 'string' || body.to === '') {
          return {
            status: 400,
            body: {
              message: 'The request body has 1 error(s)',
              details: [{ message: 'must be specified', property: 'to' }],
            },
          };
        }
        const messages = body.messages as LineMessageObject[];
        const sent = sentMessages(messages.length);
        if (retryKey !== undefined) acceptedKeys.set(retryKey, { requestId, sentMessages: sent });
        pushes.push({ to: body.to, messages, texts: textsOf(messages), retryKey, ...caller });
        return { status: 200, body: { sentMessages: sent } };
      }
      case '/v2/bot/chat/loading/start': {
        const chatId = typeof body.chatId === 'string' ? body.chatId : '';
        const seconds = body.loadingSeconds === undefined ? undefined : Number(body.loadingSeconds);
        if (!chatId.startsWith('U')) {
          return {
            status: 400,
            body: { message: "The property, 'chatId', in the request body is invalid" },
          };
        }
        if (seconds !== undefined && (seconds < 5 || seconds > 60 || seconds % 5 !== 0)) {
          return {
            status: 400,
            body: {
              message: 'The request body has 1 error(s)',
              details: [{ message: 'Invalid loadingSeconds', property: 'loadingSeconds' }],
            },
          };
        }
        loadings.push({ chatId, loadingSeconds: seconds });
        return { status: 202, body: {} };
      }
      default:
        return { status: 404, body: { message: 'Not found' } };
    }
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const path = new URL(req.url ?? '/', 'http://127.0.0.1').pathname;
    const body = await readJson(req);
    const requestId = randomUUID();
    const accessToken = (req.headers.authorization ?? '').replace(/^Bearer /, '');
    const send = ({ status, body: out, headers }: Answer) => {
      requests.push({ method: req.method ?? 'GET', path, headers: req.headers, body, status });
      res.writeHead(status, {
        'content-type': 'application/json',
        'x-line-request-id': requestId,
        ...headers,
      });
      res.end(JSON.stringify(out));
    };

    if (options.accessToken !== undefined && accessToken !== options.accessToken) {
      return send({
        status: 401,
        body: {
          message:
            'Authentication failed. Confirm that the access token in the authorization header is valid.',
        },
      });
    }
    if (req.method !== 'POST')
      return send({ status: 405, body: { message: 'Method not allowed' } });
    const index = failures.findIndex((f) => f.path === undefined || f.path === path);
    const failure = index === -1 ? undefined : failures.splice(index, 1)[0];
    if (failure?.delivered) perform(path, requestId, req.headers, body);
    send(failure ? failureAnswer(failure) : perform(path, requestId, req.headers, body));
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      res.writeHead(500, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ message: String(error) }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    baseUrl: `http://127.0.0.1:${port}`,
    replies,
    pushes,
    loadings,
    requests,
    failNext(n, failure) {
      for (let i = 0; i < n; i++) failures.push(failure);
    },
    expireReplyToken(replyToken) {
      spentTokens.add(replyToken);
    },
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
        server.closeAllConnections();
      }),
  };
}

/** LINE's 400 for a bad `messages` array, or undefined when it is fine. */
function checkMessages(messages: unknown): Answer | undefined {
  const invalid = (message: string, property: string): Answer => ({
    status: 400,
    body: { message: 'The request body has 1 error(s)', details: [{ message, property }] },
  });
  if (!Array.isArray(messages) || messages.length < 1 || messages.length > MAX_MESSAGES) {
    return invalid(`Size must be between 1 and ${MAX_MESSAGES}`, 'messages');
  }
  for (const [i, message] of (messages as LineMessageObject[]).entries()) {
    if (
      message.type === 'text' &&
      (typeof message.text !== 'string' || message.text.length > MAX_TEXT)
    ) {
      return invalid(`Length must be between 0 and ${MAX_TEXT}`, `messages[${i}].text`);
    }
  }
  return undefined;
}

function failureAnswer(failure: LineFailure): Answer {
  const messages: Record<number, string> = {
    400: 'The request body has 1 error(s)',
    401: 'Authentication failed. Confirm that the access token in the authorization header is valid.',
    403: 'The bot is not authorized to use this API',
    429: 'The API rate limit has been exceeded. Try again later.',
    500: 'Internal server error',
  };
  return {
    status: failure.status,
    body: { message: failure.message ?? messages[failure.status] ?? 'Error' },
    ...(failure.retryAfter === undefined
      ? {}
      : { headers: { 'retry-after': String(failure.retryAfter) } }),
  };
}

function textsOf(messages: readonly LineMessageObject[]): string[] {
  return messages.map((m) => m.text ?? '');
}

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  const raw = Buffer.concat(chunks).toString('utf8');
  if (raw === '') return {};
  const parsed: unknown = JSON.parse(raw);
  return typeof parsed === 'object' && parsed !== null ? (parsed as Record<string, unknown>) : {};
}
