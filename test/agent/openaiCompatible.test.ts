import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { ModelRequest, ProviderDeps, ToolSpec } from '../../pipeline/agent/modelTypes.ts';
import { ProviderError } from '../../pipeline/agent/ProviderError.ts';
import { openaiCompatible } from '../../pipeline/agent/providers/openaiCompatible.ts';
import { NonRetryableError } from '../../pipeline/errors.ts';
import { ModelTarget } from '../../pipeline/contracts/policyContract.ts';
import { closedModelUrl, startModelServer, type ModelServer } from '../fakes/modelServer.ts';

const KEY = 'sk-test-openai-key-0123456789abcdef';
const deps: ProviderDeps = {
  resolveSecret: async (ref) => {
    if (ref === 'secret:model-key') return KEY;
    throw new NonRetryableError('SECRET_MISSING', `no secret for ${ref}`);
  },
};

let model: ModelServer;
beforeAll(async () => {
  model = await startModelServer();
});
afterAll(() => model.close());
beforeEach(() => {
  model.requests.length = 0;
  model.setBehaviour(null);
  model.setDelay(0);
});

function target(overrides: Record<string, unknown> = {}) {
  const parsed = ModelTarget.parse({
    provider: 'openai_compatible',
    model: 'test-model',
    baseUrl: model.url,
    apiKey: 'secret:model-key',
    ...overrides,
  });
  if (parsed.provider !== 'openai_compatible') throw new Error('not an openai_compatible target');
  return parsed;
}

function ask(text: string, extra: Partial<ModelRequest> = {}): ModelRequest {
  return {
    messages: [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: text },
    ],
    responseFormat: 'text',
    traceId: '0af7651916cd43dd8448eb211c80319c',
    ...extra,
  };
}

const WEATHER: ToolSpec = {
  name: 'weather_now',
  description: 'The weather in a city now.',
  inputSchema: {
    type: 'object',
    properties: { city: { type: 'string' } },
    required: ['city'],
  },
};

async function failure(promise: Promise<unknown>): Promise<ProviderError> {
  const error = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  if (!(error instanceof ProviderError))
    throw new Error(`expected a ProviderError, got ${String(error)}`);
  return error;
}

describe('openaiCompatible', () => {
  it('posts a chat completion and returns the text and token usage', async () => {
    const result = await openaiCompatible(target(), ask('hello there'), deps);
    expect(result).toMatchObject({
      text: 'model: hello there',
      provider: 'openai_compatible',
      model: 'test-model',
      usage: { inputTokens: 4, outputTokens: 3 },
    });
    expect(result.latencyMs).toBeGreaterThanOrEqual(0);
    const [request] = model.requests;
    expect(request).toMatchObject({ method: 'POST', path: '/v1/chat/completions' });
    expect(request!.headers['content-type']).toBe('application/json');
    expect(request!.body).toEqual({
      model: 'test-model',
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'hello there' },
      ],
      max_tokens: 1024,
    });
  });

  it('joins the base URL the same way with or without a trailing slash', async () => {
    await openaiCompatible(target({ baseUrl: `${model.url}/` }), ask('a'), deps);
    await openaiCompatible(target({ baseUrl: model.url }), ask('b'), deps);
    expect(model.requests.map((r) => r.path)).toEqual([
      '/v1/chat/completions',
      '/v1/chat/completions',
    ]);
  });

  it('sends the Authorization header only when the target names a key', async () => {
    await openaiCompatible(target(), ask('with key'), deps);
    await openaiCompatible(target({ apiKey: undefined }), ask('without key'), {
      resolveSecret: () => Promise.reject(new Error('no key should be resolved')),
    });
    expect(model.requests[0]!.headers.authorization).toBe(`Bearer ${KEY}`);
    expect(model.requests[1]!.headers).not.toHaveProperty('authorization');
  });

  it('asks for a JSON object and sends the target max_tokens when the request wants JSON', async () => {
    const result = await openaiCompatible(
      target({ maxOutputTokens: 77 }),
      ask('hi', { responseFormat: 'json' }),
      deps,
    );
    expect(model.requests[0]!.body).toMatchObject({
      response_format: { type: 'json_object' },
      max_tokens: 77,
    });
    expect(JSON.parse(result.text)).toEqual({ answer: 'model: hi' });
  });

  it('classifies a 429 as retryable and reads retry-after seconds', async () => {
    model.failNext(1, { status: 429, headers: { 'retry-after': '2' } });
    const error = await failure(openaiCompatible(target(), ask('busy?'), deps));
    expect(error).toMatchObject({
      code: 'MODEL_RATE_LIMITED',
      retryable: true,
      provider: 'openai_compatible',
      httpStatus: 429,
      retryAfterMs: 2000,
    });
  });

  it.each([408, 409, 500, 502, 503, 529])('classifies HTTP %i as retryable', async (status) => {
    model.failNext(1, { status });
    const error = await failure(openaiCompatible(target(), ask('x'), deps));
    expect(error).toMatchObject({ retryable: true, httpStatus: status });
  });

  it.each([400, 401, 403, 404, 422])('classifies HTTP %i as not retryable', async (status) => {
    model.failNext(1, { status });
    const error = await failure(openaiCompatible(target(), ask('x'), deps));
    expect(error).toMatchObject({ retryable: false, httpStatus: status });
  });

  it('keeps the key out of a 401 error even when the provider quotes it back', async () => {
    const strict = await startModelServer({ apiKey: 'sk-the-right-key' });
    try {
      const error = await failure(
        openaiCompatible(target({ baseUrl: strict.url }), ask('let me in'), deps),
      );
      expect(strict.requests[0]!.rawBody).not.toContain(KEY);
      expect(error).toMatchObject({ code: 'MODEL_AUTH_FAILED', retryable: false, httpStatus: 401 });
      expect(error.message).toContain('Incorrect API key provided: [redacted]');
      for (const text of [
        error.message,
        String(error),
        JSON.stringify(error.detail),
        error.stack,
      ]) {
        expect(text).not.toContain(KEY);
      }
    } finally {
      await strict.close();
    }
  });

  it('quotes at most 200 characters of an error body', async () => {
    model.failNext(1, { status: 400, body: `${'x'.repeat(5000)}${KEY}` });
    const error = await failure(openaiCompatible(target(), ask('x'), deps));
    expect(error.message).toContain('x'.repeat(200));
    expect(error.message).not.toContain('x'.repeat(201));
    expect(error.message).not.toContain(KEY);
  });

  it('treats a 2xx body that is not a chat completion as retryable', async () => {
    model.respondNext({ body: 'surely not json' }, { body: { choices: [] } });
    const notJson = await failure(openaiCompatible(target(), ask('x'), deps));
    const noChoices = await failure(openaiCompatible(target(), ask('x'), deps));
    expect(notJson).toMatchObject({ code: 'MODEL_BAD_RESPONSE', retryable: true, httpStatus: 200 });
    expect(noChoices).toMatchObject({ code: 'MODEL_BAD_RESPONSE', retryable: true });
    expect(noChoices.message).toContain('choices');
  });

  it('gives up when the target timeout passes, as a retryable timeout', async () => {
    model.setDelay(10_000);
    const error = await failure(openaiCompatible(target({ timeoutMs: 100 }), ask('slow'), deps));
    expect(error).toMatchObject({ code: 'MODEL_TIMEOUT', retryable: true });
  });

  it('reports a refused connection and a dropped one as retryable network errors', async () => {
    const refused = await failure(
      openaiCompatible(target({ baseUrl: await closedModelUrl() }), ask('anyone?'), deps),
    );
    expect(refused).toMatchObject({ code: 'MODEL_NETWORK', retryable: true });
    expect(refused.message).toContain('ECONNREFUSED');

    model.respondNext({ hangUp: true });
    const dropped = await failure(openaiCompatible(target(), ask('hello?'), deps));
    expect(dropped).toMatchObject({ code: 'MODEL_NETWORK', retryable: true });
  });

  it('rethrows the caller abort as it is, not as a provider failure', async () => {
    model.setDelay(10_000);
    const controller = new AbortController();
    const reason = new Error('job cancelled');
    const call = openaiCompatible(target(), ask('x', { signal: controller.signal }), deps);
    setTimeout(() => controller.abort(reason), 20);
    await expect(call).rejects.toBe(reason);
  });

  it('fails the target without calling it when its key cannot be read', async () => {
    const error = await failure(
      openaiCompatible(target({ apiKey: 'secret:nope' }), ask('x'), deps),
    );
    expect(error).toMatchObject({ code: 'SECRET_MISSING', retryable: false });
    expect(model.requests).toHaveLength(0);
  });

  describe('tools', () => {
    it('offers tools as function tools, and sends no tools field when none are offered', async () => {
      const result = await openaiCompatible(target(), ask('weather?', { tools: [WEATHER] }), deps);
      await openaiCompatible(target(), ask('no tools', { tools: [] }), deps);
      expect(model.requests[0]!.body.tools).toEqual([
        {
          type: 'function',
          function: {
            name: 'weather_now',
            description: 'The weather in a city now.',
            parameters: WEATHER.inputSchema,
          },
        },
      ]);
      expect(model.requests[1]!.body).not.toHaveProperty('tools');
      expect(result).toMatchObject({ text: 'model: weather?', toolCalls: [] });
    });

    it('returns the tool calls a model asks for, with their JSON arguments parsed', async () => {
      model.respondNext({
        content: 'Let me look.',
        toolCalls: [
          { id: 'call_abc', name: 'weather_now', arguments: { city: 'Oslo' } },
          { name: 'weather_now', arguments: { city: 'Bergen', days: [1, 2] } },
        ],
      });
      const result = await openaiCompatible(target(), ask('weather?', { tools: [WEATHER] }), deps);
      expect(result.text).toBe('Let me look.');
      expect(result.toolCalls).toEqual([
        { id: 'call_abc', name: 'weather_now', arguments: { city: 'Oslo' } },
        {
          id: expect.stringMatching(/^call_/),
          name: 'weather_now',
          arguments: { city: 'Bergen', days: [1, 2] },
        },
      ]);
    });

    it('reads an answer whose content is null beside its tool calls as empty text', async () => {
      model.respondNext({
        body: {
          choices: [
            {
              index: 0,
              message: {
                role: 'assistant',
                content: null,
                tool_calls: [
                  {
                    id: 'call_1',
                    type: 'function',
                    function: { name: 'weather_now', arguments: '{"city":"Oslo"}' },
                  },
                ],
              },
              finish_reason: 'tool_calls',
            },
          ],
          usage: { prompt_tokens: 9, completion_tokens: 4 },
        },
      });
      const result = await openaiCompatible(target(), ask('weather?', { tools: [WEATHER] }), deps);
      expect(result).toMatchObject({
        text: '',
        toolCalls: [{ id: 'call_1', name: 'weather_now', arguments: { city: 'Oslo' } }],
        usage: { inputTokens: 9, outputTokens: 4 },
      });
    });

    it('still refuses an answer with neither content nor tool calls', async () => {
      const empty = (message: Record<string, unknown>) => ({
        body: { choices: [{ index: 0, message: { role: 'assistant', ...message } }] },
      });
      model.respondNext(empty({ content: null }), empty({ content: null, tool_calls: [] }));
      for (let i = 0; i < 2; i++) {
        const error = await failure(openaiCompatible(target(), ask('x'), deps));
        expect(error).toMatchObject({ code: 'MODEL_BAD_RESPONSE', retryable: true });
        expect(error.message).toContain('neither content nor tool calls');
      }
    });

    it.each([
      ['broken JSON', '{"city": "Oslo"'],
      ['an empty string', ''],
      ['a JSON array', '["Oslo"]'],
      ['a JSON string', '"Oslo"'],
      ['JSON null', 'null'],
    ])('gives null arguments when the model sends %s', async (_, args) => {
      model.respondNext({ toolCalls: [{ id: 'call_1', name: 'weather_now', arguments: args }] });
      const result = await openaiCompatible(target(), ask('weather?', { tools: [WEATHER] }), deps);
      expect(result.toolCalls).toEqual([{ id: 'call_1', name: 'weather_now', arguments: null }]);
    });

    it('sends the assistant tool calls and the tool results back in the chat completions shape', async () => {
      const result = await openaiCompatible(
        target(),
        {
          messages: [
            { role: 'system', content: 'Be brief.' },
            { role: 'user', content: 'weather in Oslo and Bergen?' },
            {
              role: 'assistant',
              content: '',
              toolCalls: [
                { id: 'call_1', name: 'weather_now', arguments: { city: 'Oslo' } },
                { id: 'call_2', name: 'weather_now', arguments: null },
              ],
            },
            { role: 'tool', toolCallId: 'call_1', content: '12 degrees' },
            { role: 'tool', toolCallId: 'call_2', content: 'error: arguments are not an object' },
            {
              role: 'assistant',
              content: 'Retrying Bergen.',
              toolCalls: [{ id: 'call_3', name: 'weather_now', arguments: { city: 'Bergen' } }],
            },
            { role: 'tool', toolCallId: 'call_3', content: '9 degrees' },
          ],
          responseFormat: 'text',
          tools: [WEATHER],
          traceId: '0af7651916cd43dd8448eb211c80319c',
        },
        deps,
      );
      expect(model.requests[0]!.body.messages).toEqual([
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'weather in Oslo and Bergen?' },
        {
          role: 'assistant',
          content: null,
          tool_calls: [
            {
              id: 'call_1',
              type: 'function',
              function: { name: 'weather_now', arguments: '{"city":"Oslo"}' },
            },
            { id: 'call_2', type: 'function', function: { name: 'weather_now', arguments: '{}' } },
          ],
        },
        { role: 'tool', tool_call_id: 'call_1', content: '12 degrees' },
        { role: 'tool', tool_call_id: 'call_2', content: 'error: arguments are not an object' },
        {
          role: 'assistant',
          content: 'Retrying Bergen.',
          tool_calls: [
            {
              id: 'call_3',
              type: 'function',
              function: { name: 'weather_now', arguments: '{"city":"Bergen"}' },
            },
          ],
        },
        { role: 'tool', tool_call_id: 'call_3', content: '9 degrees' },
      ]);
      expect(result).toMatchObject({ text: 'model: weather in Oslo and Bergen?', toolCalls: [] });
    });
  });
});
