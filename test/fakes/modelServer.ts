import { randomUUID } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { freePort } from '../../ops/freePort.ts';

/**
 * One message of a recorded request, loose enough for both wire formats: `content` is a string,
 * null (OpenAI, an assistant turn that only calls tools) or an array of content blocks
 * (Anthropic: `text`, `tool_use`, `tool_result`).
 */
export type RecordedMessage = {
  role: string;
  content: string | null | Record<string, unknown>[];
  /** OpenAI: the calls an assistant turn made. */
  tool_calls?: {
    id: string;
    type: string;
    function: { name: string; arguments: string };
  }[];
  /** OpenAI: the call a `tool` message answers. */
  tool_call_id?: string;
  [field: string]: unknown;
};

/**
 * The body of a recorded request, as the client sent it. Typed for the two wire formats this
 * fake speaks so tests can read `body.messages` directly; nothing here is validated. A body that
 * is not a JSON object is recorded as `{ messages: [] }` (see {@link RecordedRequest.rawBody}).
 */
export type RecordedBody = {
  model?: string;
  messages: RecordedMessage[];
  /** Anthropic: the system prompt. */
  system?: string;
  max_tokens?: number;
  /** OpenAI: `{ type: 'json_object' }` when JSON is asked for. */
  response_format?: { type: string };
  /** The tools offered, in the path's wire format. */
  tools?: Record<string, unknown>[];
  [field: string]: unknown;
};

/** One request the fake received, recorded before it is answered. */
export type RecordedRequest = {
  method: string;
  /** Path and query, e.g. `/v1/chat/completions`. */
  path: string;
  /** Node's lowercase header map, e.g. `headers.authorization`. */
  headers: IncomingHttpHeaders;
  body: RecordedBody;
  rawBody: string;
};

/**
 * How to answer one request. Every field is optional; what is left out comes from the default
 * behaviour for the request's path.
 */
export type ScriptedResponse = {
  /** HTTP status; 200 when absent. */
  status?: number;
  /**
   * The assistant's text, wrapped in a complete answer in the path's wire format (a chat
   * completion or an Anthropic message). Ignored when `body` is given.
   */
  content?: string;
  /**
   * Tool calls to answer with, in the path's wire format (OpenAI `tool_calls` with
   * `finish_reason: 'tool_calls'`, Anthropic `tool_use` blocks with `stop_reason: 'tool_use'`),
   * beside `content` when that is given too. `id` is made up when absent. `arguments` is sent as
   * is when it is a string (OpenAI; so a test can send broken JSON), else as JSON (OpenAI) or as
   * the block's `input` (Anthropic). Ignored when `body` is given.
   */
  toolCalls?: { id?: string; name: string; arguments: unknown }[];
  /**
   * The exact body: a string is sent as is (so a test can send something that is not JSON),
   * anything else as JSON. When absent, a non-2xx status gets the provider's error format.
   */
  body?: unknown;
  headers?: Record<string, string>;
  /** Wait this long before answering; the server-wide delay (`setDelay`) when absent. */
  delayMs?: number;
  /** Drop the connection without answering, as a crashed peer would. */
  hangUp?: boolean;
};

/** Decides the answer to a request; `undefined` falls through to the default behaviour. */
export type ModelBehaviour = (
  request: RecordedRequest,
) => ScriptedResponse | undefined | Promise<ScriptedResponse | undefined>;

/** A running fake model server. */
export type ModelServer = {
  /** OpenAI-compatible base URL, e.g. `http://127.0.0.1:PORT/v1` (a target's `baseUrl`). */
  url: string;
  /** Anthropic base URL, e.g. `http://127.0.0.1:PORT` (the client appends `/v1/messages`). */
  anthropicUrl: string;
  /** Every request received, oldest first. */
  requests: RecordedRequest[];
  /** Answers every later request through `fn` (after the scripted queue); `null` resets. */
  setBehaviour(fn: ModelBehaviour | null): void;
  /** Queues answers for the next requests, one each, ahead of the behaviour. */
  respondNext(...responses: ScriptedResponse[]): void;
  /** Fails the next `count` requests, with HTTP 500 unless `response` says otherwise. */
  failNext(count: number, response?: ScriptedResponse): void;
  /** Delays every answer that sets no `delayMs` of its own. */
  setDelay(ms: number): void;
  /** Stops listening and drops open connections. */
  close(): Promise<void>;
};

/**
 * Starts a fake model provider on 127.0.0.1 (a free port) speaking the real wire formats:
 * OpenAI-compatible `POST /v1/chat/completions` and Anthropic `POST /v1/messages`.
 *
 * By default it answers `model: <last user text>`, or `{"answer":"model: <text>"}` when the
 * request sets `response_format: { type: 'json_object' }`, with word-count usage. The last user
 * text is that of the last `user` message with text: a string content, or an Anthropic content
 * array's text parts (a user message holding only `tool_result` blocks is passed over). A
 * scripted `toolCalls` answers with tool calls instead, in the path's wire format. Anthropic
 * requests without `anthropic-version` get the API's 400. With `apiKey` set, a request that does
 * not carry it (`Authorization: Bearer` / `x-api-key`) gets a 401 whose message quotes the key
 * it was sent, as a careless provider would, so redaction is exercised.
 *
 * An answer is chosen from, in order: the queue (`respondNext`, `failNext`, `responses`), the
 * behaviour (`setBehaviour`, `behaviour`), the default.
 *
 * @example
 * const model = await startModelServer();
 * model.failNext(1, { status: 429, headers: { 'retry-after': '2' } });
 * // … a target with baseUrl: model.url …
 * expect(model.requests.at(-1)!.body.messages.at(-1)!.content).toBe('hello');
 * await model.close();
 */
export async function startModelServer(
  options: {
    /** The key every request must carry; any key (or none) is accepted when absent. */
    apiKey?: string;
    /** Initial server-wide delay in milliseconds. */
    delayMs?: number;
    behaviour?: ModelBehaviour;
    /** Initial scripted queue. */
    responses?: ScriptedResponse[];
  } = {},
): Promise<ModelServer> {
  const requests: RecordedRequest[] = [];
  const queue: ScriptedResponse[] = [...(options.responses ?? [])];
  let behaviour: ModelBehaviour | null = options.behaviour ?? null;
  let delayMs = options.delayMs ?? 0;

  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const rawBody = Buffer.concat(chunks).toString('utf8');
      const recorded: RecordedRequest = {
        method: req.method ?? 'GET',
        path: req.url ?? '/',
        headers: req.headers,
        body: parseBody(rawBody),
        rawBody,
      };
      requests.push(recorded);
      void answer(recorded, res).catch((error: unknown) => {
        if (!res.headersSent) send(res, 500, { error: { message: String(error) } });
      });
    });
  });

  async function answer(request: RecordedRequest, res: ServerResponse) {
    let clientGone = false;
    res.once('close', () => (clientGone = true));
    const wire = wireOf(request.path);
    const scripted = queue.shift() ?? (await behaviour?.(request)) ?? {};
    const wait = scripted.delayMs ?? delayMs;
    if (wait > 0) await sleepUnlessClosed(wait, res);
    if (clientGone) return;
    if (scripted.hangUp) {
      res.socket?.destroy();
      return;
    }
    const refusal = scripted.status === undefined ? refuse(request, wire) : null;
    if (refusal) return send(res, refusal.status, refusal.body);
    const status = scripted.status ?? 200;
    const body =
      scripted.body !== undefined
        ? scripted.body
        : status >= 200 && status < 300
          ? reply(request, wire, scripted)
          : errorBody(wire, status, `fake failure with HTTP ${status}`);
    send(res, status, body, scripted.headers);
  }

  /** The default checks a real provider makes before answering. */
  function refuse(request: RecordedRequest, wire: Wire): { status: number; body: unknown } | null {
    if (request.method !== 'POST' || wire === null) {
      return { status: 404, body: errorBody('openai', 404, `no route for ${request.path}`) };
    }
    if (wire === 'anthropic' && request.headers['anthropic-version'] === undefined) {
      return {
        status: 400,
        body: errorBody(wire, 400, 'anthropic-version: header is required'),
      };
    }
    if (options.apiKey !== undefined) {
      const sent =
        wire === 'anthropic'
          ? request.headers['x-api-key']
          : request.headers.authorization?.replace(/^Bearer /, '');
      if (sent !== options.apiKey) {
        return {
          status: 401,
          body: errorBody(wire, 401, `Incorrect API key provided: ${String(sent ?? '(none)')}.`),
        };
      }
    }
    return null;
  }

  function reply(request: RecordedRequest, wire: Wire, scripted: ScriptedResponse): unknown {
    const { body } = request;
    const text = lastUserText(body);
    const json = body.response_format?.type === 'json_object';
    const calls = scripted.toolCalls?.map(({ id, name, arguments: args }) => ({
      id: id ?? `${wire === 'anthropic' ? 'toolu_' : 'call_'}${randomUUID().replaceAll('-', '')}`,
      name,
      args,
    }));
    // Beside tool calls the text is only what the script gives, as a real model may say nothing.
    const answerText =
      scripted.content ??
      (calls ? null : json ? JSON.stringify({ answer: `model: ${text}` }) : `model: ${text}`);
    const inputTokens = countWords(
      [body.system ?? '', ...body.messages.map((m) => contentText(m.content))].join(' '),
    );
    const outputTokens = countWords(
      [answerText ?? '', ...(calls ?? []).map((c) => JSON.stringify(c.args) ?? '')].join(' '),
    );
    if (wire === 'anthropic') {
      return {
        id: `msg_${randomUUID().replaceAll('-', '')}`,
        type: 'message',
        role: 'assistant',
        model: body.model ?? 'fake',
        content: [
          ...(answerText === null || (calls && answerText === '')
            ? []
            : [{ type: 'text', text: answerText }]),
          ...(calls ?? []).map(({ id, name, args }) => ({
            type: 'tool_use',
            id,
            name,
            input: args,
          })),
        ],
        stop_reason: calls ? 'tool_use' : 'end_turn',
        stop_sequence: null,
        usage: { input_tokens: inputTokens, output_tokens: outputTokens },
      };
    }
    return {
      id: `chatcmpl-${randomUUID().replaceAll('-', '')}`,
      object: 'chat.completion',
      created: Math.floor(Date.now() / 1000),
      model: body.model ?? 'fake',
      choices: [
        {
          index: 0,
          message: {
            role: 'assistant',
            content: answerText,
            ...(calls
              ? {
                  tool_calls: calls.map(({ id, name, args }) => ({
                    id,
                    type: 'function',
                    function: {
                      name,
                      arguments: typeof args === 'string' ? args : JSON.stringify(args),
                    },
                  })),
                }
              : {}),
          },
          finish_reason: calls ? 'tool_calls' : 'stop',
        },
      ],
      usage: {
        prompt_tokens: inputTokens,
        completion_tokens: outputTokens,
        total_tokens: inputTokens + outputTokens,
      },
    };
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}/v1`,
    anthropicUrl: `http://127.0.0.1:${port}`,
    requests,
    setBehaviour(fn) {
      behaviour = fn;
    },
    respondNext(...responses) {
      queue.push(...responses);
    },
    failNext(count, response = { status: 500 }) {
      for (let i = 0; i < count; i++) queue.push(response);
    },
    setDelay(ms) {
      delayMs = ms;
    },
    close() {
      return new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}

type Wire = 'openai' | 'anthropic' | null;

function wireOf(path: string): Wire {
  const pathname = path.split('?')[0] ?? '';
  if (pathname.endsWith('/chat/completions')) return 'openai';
  if (pathname === '/v1/messages') return 'anthropic';
  return null;
}

/** Each provider's error envelope. */
function errorBody(wire: Wire, status: number, message: string): unknown {
  if (wire === 'anthropic') {
    const type =
      status === 401
        ? 'authentication_error'
        : status === 429
          ? 'rate_limit_error'
          : status >= 500
            ? 'api_error'
            : 'invalid_request_error';
    return { type: 'error', error: { type, message } };
  }
  const type =
    status === 429
      ? 'rate_limit_exceeded'
      : status >= 500
        ? 'server_error'
        : 'invalid_request_error';
  return {
    error: { message, type, param: null, code: status === 401 ? 'invalid_api_key' : null },
  };
}

function send(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(text);
}

function parseBody(raw: string): RecordedBody {
  try {
    const parsed: unknown = JSON.parse(raw);
    if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) {
      const body = parsed as Record<string, unknown>;
      // Recorded as sent, unvalidated: a test asserts on what it expects to find.
      return { ...body, messages: Array.isArray(body.messages) ? body.messages : [] };
    }
  } catch {
    // Not JSON: the test reads rawBody.
  }
  return { messages: [] };
}

function lastUserText(body: RecordedBody): string {
  const last = body.messages.findLast((m) => m.role === 'user' && hasText(m.content));
  return last ? contentText(last.content) : '';
}

/** Whether content is text: a string, or a content array with a text part. */
function hasText(content: unknown): boolean {
  return (
    typeof content === 'string' ||
    (Array.isArray(content) &&
      content.some((part: unknown) => part && typeof part === 'object' && 'text' in part))
  );
}

/** Message content as text: a plain string, or the text parts of a content array. */
function contentText(content: unknown): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  return content
    .map((part: unknown) =>
      part && typeof part === 'object' && 'text' in part && typeof part.text === 'string'
        ? part.text
        : '',
    )
    .join('');
}

function countWords(text: string): number {
  return text.split(/\s+/).filter(Boolean).length;
}

/** Waits `ms`, or less when the client goes away first (a timed-out or aborted call). */
function sleepUnlessClosed(ms: number, res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    res.once('close', done);
    function done() {
      clearTimeout(timer);
      res.off('close', done);
      resolve();
    }
  });
}

/**
 * An OpenAI-compatible base URL on which nothing listens (a port that was free a moment ago),
 * for testing a refused connection.
 */
export async function closedModelUrl(): Promise<string> {
  return `http://127.0.0.1:${await freePort()}/v1`;
}
