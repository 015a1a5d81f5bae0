import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** One `chat.postMessage` the fake accepted. */
export type SlackPost = {
  channel: string;
  text: string;
  threadTs: string | undefined;
  /** The `blocks` argument, parsed (a form body carries it as a JSON string). */
  blocks: unknown;
  /** The `ts` the fake gave the message. */
  ts: string;
  /** The bearer token the request carried. */
  token: string;
};

/** Any request that reached the fake, failed or not. */
export type SlackRequest = {
  path: string;
  contentType: string;
  args: Record<string, unknown>;
  status: number;
};

/** A scripted failure for {@link SlackServer.failNext}. */
export type SlackFailure =
  /** HTTP 429 with `Retry-After: seconds`, as Slack rate-limits a method. */
  | { kind: 'rate_limited'; retryAfter: number }
  /** HTTP 200 with `{ ok: false, error }`, as Slack refuses a call. */
  | { kind: 'error'; error: string }
  /** An HTTP status with no Slack body (a proxy in front of it). */
  | { kind: 'http'; status: number };

/** A local stand-in for the Slack Web API, speaking its wire format. */
export type SlackServer = {
  /** Pass as `WebClient`'s `slackApiUrl` (it ends in `/api/`). */
  apiBaseUrl: string;
  posts: SlackPost[];
  requests: SlackRequest[];
  /** The next `n` calls answer with `failure` instead of succeeding. */
  failNext(n: number, failure: SlackFailure): void;
  close(): Promise<void>;
};

/**
 * Starts a fake Slack Web API on a local port. `POST /api/<method>` takes the arguments as
 * Slack does, form-encoded (`application/x-www-form-urlencoded`, nested values as JSON
 * strings) or JSON, with the token as `Authorization: Bearer` or a `token` argument, and
 * answers `{ ok, … }` with HTTP 200, `{ ok: false, error }` for a refusal, and 429 with
 * `Retry-After` when rate limited. `chat.postMessage` records the post and answers its `ts`;
 * with `token` set, any other token is `invalid_auth`. Other methods answer `unknown_method`.
 */
export async function startSlackServer({ token }: { token?: string } = {}): Promise<SlackServer> {
  const posts: SlackPost[] = [];
  const requests: SlackRequest[] = [];
  const failures: SlackFailure[] = [];
  let seq = 0;

  const answer = (res: ServerResponse, status: number, body: unknown, headers = {}) => {
    res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', ...headers });
    res.end(JSON.stringify(body));
  };

  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const path = (req.url ?? '').split('?')[0] ?? '';
      const contentType = String(req.headers['content-type'] ?? '');
      const raw = Buffer.concat(chunks).toString('utf8');
      const args = readArgs(raw, contentType);
      const record = (status: number) => requests.push({ path, contentType, args, status });
      if (req.method !== 'POST' || !path.startsWith('/api/')) {
        record(404);
        return answer(res, 404, { ok: false, error: 'unknown_method' });
      }
      const failure = failures.shift();
      if (failure?.kind === 'rate_limited') {
        record(429);
        return answer(
          res,
          429,
          { ok: false, error: 'ratelimited' },
          {
            'retry-after': String(failure.retryAfter),
          },
        );
      }
      if (failure?.kind === 'http') {
        record(failure.status);
        res.writeHead(failure.status, { 'content-type': 'text/html' });
        return res.end('<html>bad gateway</html>');
      }
      if (failure?.kind === 'error') {
        record(200);
        return answer(res, 200, { ok: false, error: failure.error });
      }
      const bearer = /^Bearer (.+)$/.exec(String(req.headers.authorization ?? ''))?.[1];
      const sent = bearer ?? (typeof args.token === 'string' ? args.token : '');
      if (sent === '' || (token !== undefined && sent !== token)) {
        record(200);
        return answer(res, 200, { ok: false, error: sent === '' ? 'not_authed' : 'invalid_auth' });
      }
      if (path !== '/api/chat.postMessage') {
        record(200);
        return answer(res, 200, { ok: false, error: 'unknown_method' });
      }
      const channel = typeof args.channel === 'string' ? args.channel : '';
      const text = typeof args.text === 'string' ? args.text : '';
      const blocks =
        typeof args.blocks === 'string' ? (JSON.parse(args.blocks) as unknown) : args.blocks;
      if (channel === '') {
        record(200);
        return answer(res, 200, { ok: false, error: 'channel_not_found' });
      }
      if (text === '' && blocks === undefined) {
        record(200);
        return answer(res, 200, { ok: false, error: 'no_text' });
      }
      if (text.length > 40_000) {
        record(200);
        return answer(res, 200, { ok: false, error: 'msg_too_long' });
      }
      seq += 1;
      const ts = `${Math.floor(Date.now() / 1000)}.${String(seq).padStart(6, '0')}`;
      const threadTs = typeof args.thread_ts === 'string' ? args.thread_ts : undefined;
      posts.push({ channel, text, threadTs, blocks, ts, token: sent });
      record(200);
      answer(res, 200, {
        ok: true,
        channel,
        ts,
        message: {
          type: 'message',
          subtype: 'bot_message',
          text,
          ts,
          bot_id: 'B0FAKEBOT',
          ...(threadTs === undefined ? {} : { thread_ts: threadTs }),
        },
      });
    });
  });
  server.listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  const { port } = server.address() as AddressInfo;
  return {
    apiBaseUrl: `http://127.0.0.1:${port}/api/`,
    posts,
    requests,
    failNext(n, failure) {
      for (let i = 0; i < n; i += 1) failures.push(failure);
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** The call's arguments from a form or JSON body, as Slack reads either. */
function readArgs(raw: string, contentType: string): Record<string, unknown> {
  if (contentType.startsWith('application/json')) {
    try {
      const parsed = JSON.parse(raw) as unknown;
      return typeof parsed === 'object' && parsed !== null
        ? (parsed as Record<string, unknown>)
        : {};
    } catch {
      return {};
    }
  }
  return Object.fromEntries(new URLSearchParams(raw));
}
