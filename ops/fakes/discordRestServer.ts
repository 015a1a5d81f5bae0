import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** One message the fake made (`POST /channels/:id/messages`). */
export type DiscordPost = {
  channelId: string;
  /** The JSON body as sent (content, embeds, components, message_reference, nonce, ...). */
  body: Record<string, unknown>;
  /** The message id the fake gave it. */
  id: string;
  /** The bot token the request carried (`Authorization: Bot <token>`). */
  token: string;
};

/** Any request that reached the fake, failed or not. */
export type DiscordRestRequest = { method: string; path: string; status: number };

/** A scripted failure for {@link DiscordRestServer.failNext}. */
export type DiscordRestFailure =
  /** 429 with `Retry-After`, `X-RateLimit-*` headers and `{ retry_after }`, as Discord sends. */
  | { kind: 'rate_limited'; retryAfter: number; global?: boolean }
  /** A JSON error Discord sends for a refusal (`{ code, message }`), e.g. 403 Missing Access. */
  | { kind: 'error'; status: number; code: number; message: string }
  /** An HTTP status with no Discord body (a gateway in front of it). */
  | { kind: 'http'; status: number };

/** A local stand-in for Discord's REST API (v10), speaking its wire format. */
export type DiscordRestServer = {
  /** Pass as the REST client's `api` (no version: the client adds `/v10`). */
  apiBaseUrl: string;
  posts: DiscordPost[];
  requests: DiscordRestRequest[];
  /** DM channels opened (`POST /users/@me/channels`), by recipient. */
  dms: Map<string, string>;
  /** Channels a typing indicator was triggered in (`POST /channels/:id/typing`), in order. */
  typing: string[];
  /** What `GET /gateway/bot` names as the Gateway's URL. */
  setGatewayUrl(url: string): void;
  /** The next `n` message creations (or DM openings) answer with `failure`. */
  failNext(n: number, failure: DiscordRestFailure): void;
  close(): Promise<void>;
};

let nextSnowflake = 1_300_000_000_000_000_000n;
/** A fresh snowflake-shaped id (19 digits). */
export function snowflake(): string {
  nextSnowflake += 1n;
  return String(nextSnowflake);
}

/**
 * Starts a fake Discord REST API on a local port: `GET /api/v10/gateway/bot` (the URL set by
 * `setGatewayUrl`, one shard), `POST /api/v10/channels/:id/messages` (records the message and
 * answers a message object; a repeat `nonce` with `enforce_nonce` gets the first message back
 * and makes no second, as Discord does), `POST /api/v10/users/@me/channels` (one DM channel per
 * recipient), `POST /api/v10/channels/:id/typing` (204). Every call needs `Authorization: Bot <token>` (401 otherwise). Answers carry
 * `X-RateLimit-*` bucket headers; a scripted 429 carries `Retry-After` and `retry_after`.
 */
export async function startDiscordRestServer({
  token,
  botUserId = '1100000000000000001',
}: {
  token: string;
  botUserId?: string;
}): Promise<DiscordRestServer> {
  const posts: DiscordPost[] = [];
  const requests: DiscordRestRequest[] = [];
  const failures: DiscordRestFailure[] = [];
  const dms = new Map<string, string>();
  const typing: string[] = [];
  const byNonce = new Map<string, DiscordPost>();
  let gatewayUrl = 'ws://127.0.0.1:9';

  const answer = (
    res: ServerResponse,
    status: number,
    body: unknown,
    headers: Record<string, string> = {},
  ) => {
    // A 204 carries no body and, as Discord sends it, no content type.
    res.writeHead(status, {
      ...(status === 204 ? {} : { 'content-type': 'application/json' }),
      'x-ratelimit-limit': '5',
      'x-ratelimit-remaining': '4',
      'x-ratelimit-reset': String(Date.now() / 1000 + 5),
      'x-ratelimit-reset-after': '5.000',
      'x-ratelimit-bucket': 'fakebucket0001',
      ...headers,
    });
    res.end(status === 204 ? undefined : JSON.stringify(body));
  };

  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const method = req.method ?? 'GET';
      const path = (req.url ?? '').split('?')[0] ?? '';
      const record = (status: number) => requests.push({ method, path, status });
      const sent = /^Bot (.+)$/.exec(String(req.headers.authorization ?? ''))?.[1] ?? '';
      if (sent !== token) {
        record(401);
        return answer(res, 401, { message: '401: Unauthorized', code: 0 });
      }
      if (method === 'GET' && path === '/api/v10/gateway/bot') {
        record(200);
        return answer(res, 200, {
          url: gatewayUrl,
          shards: 1,
          session_start_limit: {
            total: 1000,
            remaining: 999,
            reset_after: 14_400_000,
            max_concurrency: 1,
          },
        });
      }
      let body: Record<string, unknown>;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as Record<
          string,
          unknown
        >;
      } catch {
        record(400);
        return answer(res, 400, { message: '400: Bad Request', code: 50109 });
      }
      if (method === 'POST' && /^\/api\/v10\/channels\/\d+\/typing$/.test(path)) {
        record(204);
        typing.push(path.split('/')[4]!);
        return answer(res, 204, null);
      }
      const messages = /^\/api\/v10\/channels\/(\d+)\/messages$/.exec(path);
      const isDm = method === 'POST' && path === '/api/v10/users/@me/channels';
      if (!(method === 'POST' && (messages || isDm))) {
        record(404);
        return answer(res, 404, { message: '404: Not Found', code: 0 });
      }
      const failure = failures.shift();
      if (failure?.kind === 'rate_limited') {
        record(429);
        return answer(
          res,
          429,
          {
            message: 'You are being rate limited.',
            retry_after: failure.retryAfter,
            global: failure.global ?? false,
          },
          {
            'retry-after': String(Math.ceil(failure.retryAfter)),
            'x-ratelimit-remaining': '0',
            'x-ratelimit-reset-after': String(failure.retryAfter),
            'x-ratelimit-scope': failure.global ? 'global' : 'user',
            ...(failure.global ? { 'x-ratelimit-global': 'true' } : {}),
          },
        );
      }
      if (failure?.kind === 'error') {
        record(failure.status);
        return answer(res, failure.status, { message: failure.message, code: failure.code });
      }
      if (failure?.kind === 'http') {
        record(failure.status);
        res.writeHead(failure.status, { 'content-type': 'text/html' });
        return res.end('<html>bad gateway</html>');
      }
      if (isDm) {
        const recipient = typeof body.recipient_id === 'string' ? body.recipient_id : '';
        if (!/^\d+$/.test(recipient)) {
          record(400);
          return answer(res, 400, { message: 'Invalid Form Body', code: 50035 });
        }
        const id = dms.get(recipient) ?? snowflake();
        dms.set(recipient, id);
        record(200);
        return answer(res, 200, {
          id,
          type: 1,
          last_message_id: null,
          flags: 0,
          recipients: [{ id: recipient, username: 'approver', discriminator: '0' }],
        });
      }
      const channelId = messages![1]!;
      const content = typeof body.content === 'string' ? body.content : '';
      if (content === '' && body.embeds === undefined && body.components === undefined) {
        record(400);
        return answer(res, 400, { message: 'Cannot send an empty message', code: 50006 });
      }
      if (content.length > 2000) {
        record(400);
        return answer(res, 400, { message: 'Invalid Form Body', code: 50035 });
      }
      const nonce = typeof body.nonce === 'string' ? body.nonce : undefined;
      const known = nonce !== undefined && body.enforce_nonce === true && byNonce.get(nonce);
      const post = known || { channelId, body, id: snowflake(), token: sent };
      if (!known) {
        posts.push(post);
        if (nonce !== undefined) byNonce.set(nonce, post);
      }
      record(200);
      answer(res, 200, {
        id: post.id,
        channel_id: channelId,
        type: body.message_reference ? 19 : 0,
        content,
        author: { id: botUserId, username: 'awooop', discriminator: '0', bot: true },
        timestamp: new Date().toISOString(),
        edited_timestamp: null,
        tts: false,
        mention_everyone: false,
        mentions: [],
        mention_roles: [],
        attachments: [],
        embeds: body.embeds ?? [],
        components: body.components ?? [],
        pinned: false,
        flags: 0,
        ...(nonce === undefined ? {} : { nonce }),
      });
    });
  });
  server.listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  const { port } = server.address() as AddressInfo;
  return {
    apiBaseUrl: `http://127.0.0.1:${port}/api`,
    posts,
    requests,
    dms,
    typing,
    setGatewayUrl: (url) => void (gatewayUrl = url),
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
