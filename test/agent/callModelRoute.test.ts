import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { callModelRoute } from '../../pipeline/agent/callModelRoute.ts';
import type { ModelRequest, ProviderDeps } from '../../pipeline/agent/modelTypes.ts';
import { ModelTarget } from '../../pipeline/contracts/policyContract.ts';
import { AppError, NonRetryableError, RetryAfterError } from '../../pipeline/errors.ts';
import { closedModelUrl, startModelServer, type ModelServer } from '../fakes/modelServer.ts';

const KEY = 'sk-route-test-key-0123456789abcdef';
const deps: ProviderDeps = { resolveSecret: async () => KEY };

let primary: ModelServer;
let fallback: ModelServer;
beforeAll(async () => {
  [primary, fallback] = await Promise.all([startModelServer(), startModelServer()]);
});
afterAll(() => Promise.all([primary.close(), fallback.close()]));
beforeEach(() => {
  for (const server of [primary, fallback]) {
    server.requests.length = 0;
    server.setBehaviour(null);
    server.setDelay(0);
  }
});

function openai(baseUrl: string, extra: Record<string, unknown> = {}): ModelTarget {
  return ModelTarget.parse({
    provider: 'openai_compatible',
    model: 'test-model',
    baseUrl,
    apiKey: 'secret:model-key',
    ...extra,
  });
}

const echoTarget = ModelTarget.parse({ provider: 'echo' });

function ask(text: string, signal?: AbortSignal): ModelRequest {
  return {
    messages: [{ role: 'user', content: text }],
    responseFormat: 'text',
    traceId: '0af7651916cd43dd8448eb211c80319c',
    ...(signal ? { signal } : {}),
  };
}

async function rejection(promise: Promise<unknown>): Promise<AppError> {
  const error = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  if (!(error instanceof AppError)) throw new Error(`expected an AppError, got ${String(error)}`);
  return error;
}

describe('callModelRoute', () => {
  it('answers from the primary and records one attempt', async () => {
    const result = await callModelRoute(
      [openai(primary.url), openai(fallback.url)],
      ask('hi'),
      deps,
    );
    expect(result).toMatchObject({ text: 'model: hi', provider: 'openai_compatible' });
    expect(result.attempts).toEqual([
      { provider: 'openai_compatible', model: 'test-model', ms: expect.any(Number) },
    ]);
    expect(fallback.requests).toHaveLength(0);
  });

  it('falls back to the next target after a 500', async () => {
    primary.failNext(1, { status: 500 });
    const result = await callModelRoute(
      [openai(primary.url), openai(fallback.url, { model: 'backup' })],
      ask('fallback please'),
      deps,
    );
    expect(result).toMatchObject({ text: 'model: fallback please', model: 'backup' });
    expect(result.attempts.map(({ model, code }) => ({ model, code }))).toEqual([
      { model: 'test-model', code: 'MODEL_SERVER_ERROR' },
      { model: 'backup', code: undefined },
    ]);
    expect(fallback.requests.at(-1)!.body.messages.at(-1)!.content).toBe('fallback please');
  });

  it('falls back to the next target when the connection is refused', async () => {
    const result = await callModelRoute(
      [openai(await closedModelUrl()), openai(fallback.url)],
      ask('still there?'),
      deps,
    );
    expect(result.text).toBe('model: still there?');
    expect(result.attempts[0]).toMatchObject({ code: 'MODEL_NETWORK' });
  });

  it('falls back after a refusal that retrying cannot fix, too', async () => {
    primary.failNext(1, { status: 401 });
    const result = await callModelRoute([openai(primary.url), echoTarget], ask('hello'), deps);
    expect(result).toMatchObject({ text: 'echo: hello', provider: 'echo' });
    expect(result.attempts[0]).toMatchObject({ code: 'MODEL_AUTH_FAILED' });
  });

  it('falls back when the primary outlives its timeout', async () => {
    primary.setDelay(10_000);
    const result = await callModelRoute(
      [openai(primary.url, { timeoutMs: 100 }), openai(fallback.url)],
      ask('quick'),
      deps,
    );
    expect(result.text).toBe('model: quick');
    expect(result.attempts[0]).toMatchObject({ code: 'MODEL_TIMEOUT' });
  });

  it('fails with MODEL_UNAVAILABLE (503, retried later) when any failure could pass with time', async () => {
    primary.failNext(1, { status: 401 });
    fallback.failNext(1, {
      status: 429,
      headers: { 'retry-after': '3' },
      body: { error: { message: `slow down, ${KEY}`, type: 'rate_limit_exceeded' } },
    });
    const error = await rejection(
      callModelRoute([openai(primary.url), openai(fallback.url)], ask('x'), deps),
    );
    expect(error).not.toBeInstanceOf(NonRetryableError);
    expect(error).toMatchObject({ code: 'MODEL_UNAVAILABLE', status: 503 });
    expect(error.detail).toMatchObject({
      attempts: [{ code: 'MODEL_AUTH_FAILED' }, { code: 'MODEL_RATE_LIMITED' }],
      retryAfterMs: 3000,
    });
    expect(error.message).not.toMatch(/slow down|HTTP|429/);
    expect(`${error.message} ${JSON.stringify(error.detail)} ${String(error.cause)}`).not.toContain(
      KEY,
    );
  });

  it('says when to retry (a RetryAfterError spending an attempt) when every target that may recover sent Retry-After', async () => {
    primary.failNext(1, { status: 429, headers: { 'retry-after': '5' } });
    fallback.failNext(1, { status: 503, headers: { 'retry-after': '2' } });
    const error = await rejection(
      callModelRoute([openai(primary.url), openai(fallback.url)], ask('x'), deps),
    );
    expect(error).toBeInstanceOf(RetryAfterError);
    expect(error).toMatchObject({
      code: 'MODEL_UNAVAILABLE',
      status: 503,
      retryAfterMs: 2000,
      spendsAttempt: true,
    });
    expect(error.detail).toMatchObject({ retryAfterMs: 2000 });
  });

  it('leaves the wait to the backoff when a target that may recover gave no Retry-After', async () => {
    primary.failNext(1, { status: 429, headers: { 'retry-after': '5' } });
    fallback.failNext(1, { status: 500 });
    const error = await rejection(
      callModelRoute([openai(primary.url), openai(fallback.url)], ask('x'), deps),
    );
    expect(error).not.toBeInstanceOf(RetryAfterError);
    expect(error).toMatchObject({ code: 'MODEL_UNAVAILABLE', status: 503 });
  });

  it('fails with MODEL_REJECTED (not retried) when every failure is final', async () => {
    primary.failNext(1, { status: 401 });
    fallback.failNext(1, { status: 400 });
    const error = await rejection(
      callModelRoute([openai(primary.url), openai(fallback.url)], ask('x'), deps),
    );
    expect(error).toBeInstanceOf(NonRetryableError);
    expect(error).toMatchObject({ code: 'MODEL_REJECTED' });
    expect(error.detail).toMatchObject({
      attempts: [{ code: 'MODEL_AUTH_FAILED' }, { code: 'MODEL_BAD_REQUEST' }],
    });
    expect(error.message).not.toMatch(/HTTP|401|400/);
  });

  it('stops at once and rethrows when the caller aborts, trying no fallback', async () => {
    primary.setDelay(10_000);
    const controller = new AbortController();
    const reason = new Error('job cancelled');
    const call = callModelRoute(
      [openai(primary.url), openai(fallback.url)],
      ask('x', controller.signal),
      deps,
    );
    setTimeout(() => controller.abort(reason), 20);
    await expect(call).rejects.toBe(reason);
    expect(fallback.requests).toHaveLength(0);
  });

  it('calls nothing when the caller has already aborted', async () => {
    const reason = new Error('already gone');
    await expect(
      callModelRoute([openai(primary.url)], ask('x', AbortSignal.abort(reason)), deps),
    ).rejects.toBe(reason);
    expect(primary.requests).toHaveLength(0);
  });

  it('logs each failed target with its code and without the key', async () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(chunk.toString('utf8'));
        done();
      },
    });
    primary.setBehaviour(() => ({ status: 401, body: `bad key ${KEY}` }));
    await callModelRoute([openai(primary.url), echoTarget], ask('x'), {
      ...deps,
      logger: pino({ level: 'warn' }, sink),
    });
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0]!)).toMatchObject({
      msg: 'model target failed',
      traceId: '0af7651916cd43dd8448eb211c80319c',
      code: 'MODEL_AUTH_FAILED',
      provider: 'openai_compatible',
      model: 'test-model',
      httpStatus: 401,
    });
    expect(lines[0]).not.toContain(KEY);
  });
});
