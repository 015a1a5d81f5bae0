import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { postCallback } from '../../pipeline/channels/api/postCallback.ts';
import { NonRetryableError, RetryAfterError } from '../../pipeline/errors.ts';
import { failure } from '../helpers/failure.ts';

type Received = { headers: IncomingMessage['headers']; body: unknown };

const received: Received[] = [];
let answer: (res: ServerResponse) => void = (res) => res.writeHead(204).end();
const server = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    received.push({
      headers: req.headers,
      body: JSON.parse(Buffer.concat(chunks).toString('utf8')),
    });
    answer(res);
  });
});
let url: string;

beforeAll(async () => {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks/awooop?token=secret_part`;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

describe('postCallback', () => {
  it('posts the payload as JSON with an Idempotency-Key', async () => {
    answer = (res) => res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
    await postCallback(url, { run_id: 'r1', text: 'done' }, 'key-1');
    expect(received.at(-1)).toMatchObject({
      headers: { 'content-type': 'application/json', 'idempotency-key': 'key-1' },
      body: { run_id: 'r1', text: 'done' },
    });
  });

  it('treats 429 and 5xx as retryable CALLBACK_UNAVAILABLE, honouring Retry-After', async () => {
    answer = (res) => res.writeHead(503).end();
    const down = await failure(postCallback(url, {}, 'k'));
    expect(down.code).toBe('CALLBACK_UNAVAILABLE');
    expect(down).not.toBeInstanceOf(NonRetryableError);

    answer = (res) => res.writeHead(429).end();
    expect((await failure(postCallback(url, {}, 'k'))).code).toBe('CALLBACK_UNAVAILABLE');

    answer = (res) => res.writeHead(429, { 'retry-after': '3' }).end();
    const limited = await failure(postCallback(url, {}, 'k'));
    expect(limited).toBeInstanceOf(RetryAfterError);
    expect((limited as RetryAfterError).retryAfterMs).toBe(3000);
  });

  it('treats other 4xx and redirects as non-retryable CALLBACK_REJECTED', async () => {
    answer = (res) => res.writeHead(404).end();
    const missing = await failure(postCallback(url, {}, 'k'));
    expect(missing).toBeInstanceOf(NonRetryableError);
    expect(missing.code).toBe('CALLBACK_REJECTED');

    answer = (res) => res.writeHead(302, { location: 'http://127.0.0.1:1/elsewhere' }).end();
    expect((await failure(postCallback(url, {}, 'k'))).code).toBe('CALLBACK_REJECTED');
  });

  it('treats a refused connection as retryable and keeps the query out of the message', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    const error = await failure(
      postCallback(`http://127.0.0.1:${port}/cb?token=secret_part`, {}, 'k'),
    );
    expect(error.code).toBe('CALLBACK_UNAVAILABLE');
    expect(error.message).not.toContain('secret_part');
  });

  it('gives up when the caller aborts', async () => {
    answer = () => undefined;
    const controller = new AbortController();
    const pending = failure(postCallback(url, {}, 'k', controller.signal));
    setTimeout(() => controller.abort(), 50);
    expect((await pending).code).toBe('CALLBACK_UNAVAILABLE');
  });
});
