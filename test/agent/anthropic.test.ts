import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { ModelRequest, ProviderDeps, ToolSpec } from '../../pipeline/agent/modelTypes.ts';
import { ProviderError } from '../../pipeline/agent/ProviderError.ts';
import { anthropic } from '../../pipeline/agent/providers/anthropic.ts';
import { ModelTarget } from '../../pipeline/contracts/policyContract.ts';
import { startModelServer, type ModelServer } from '../fakes/modelServer.ts';

const KEY = 'sk-ant-test-key-0123456789abcdef';
const deps: ProviderDeps = { resolveSecret: async () => KEY };

let model: ModelServer;
beforeAll(async () => {
  model = await startModelServer({ apiKey: KEY });
});
afterAll(() => model.close());
beforeEach(() => {
  model.requests.length = 0;
});

function target(overrides: Record<string, unknown> = {}) {
  const parsed = ModelTarget.parse({
    provider: 'anthropic',
    model: 'claude-test',
    apiKey: 'env:ANTHROPIC_API_KEY',
    baseUrl: model.anthropicUrl,
    ...overrides,
  });
  if (parsed.provider !== 'anthropic') throw new Error('not an anthropic target');
  return parsed;
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

function ask(extra: Partial<ModelRequest> = {}): ModelRequest {
  return {
    messages: [
      { role: 'system', content: 'You are terse.' },
      { role: 'system', content: 'Answer in English.' },
      { role: 'user', content: 'first' },
      { role: 'assistant', content: 'model: first' },
      { role: 'user', content: 'second question' },
    ],
    responseFormat: 'text',
    traceId: '0af7651916cd43dd8448eb211c80319c',
    ...extra,
  };
}

describe('anthropic', () => {
  it('posts to /v1/messages with the key, the API version and the system prompt on top', async () => {
    const result = await anthropic(target({ maxOutputTokens: 300 }), ask(), deps);
    expect(result).toMatchObject({
      text: 'model: second question',
      provider: 'anthropic',
      model: 'claude-test',
      usage: { inputTokens: 11, outputTokens: 3 },
    });
    const [request] = model.requests;
    expect(request!.path).toBe('/v1/messages');
    expect(request!.headers['x-api-key']).toBe(KEY);
    expect(request!.headers['anthropic-version']).toBe('2023-06-01');
    expect(request!.headers).not.toHaveProperty('authorization');
    expect(request!.body).toEqual({
      model: 'claude-test',
      max_tokens: 300,
      system: 'You are terse.\n\nAnswer in English.',
      messages: [
        { role: 'user', content: 'first' },
        { role: 'assistant', content: 'model: first' },
        { role: 'user', content: 'second question' },
      ],
    });
  });

  it('joins the text blocks of an answer and skips the others', async () => {
    model.respondNext({
      body: {
        id: 'msg_1',
        type: 'message',
        role: 'assistant',
        model: 'claude-test',
        content: [
          { type: 'thinking', thinking: 'hmm', signature: 'sig' },
          { type: 'text', text: 'Hello, ' },
          { type: 'text', text: 'world.' },
        ],
        stop_reason: 'end_turn',
        stop_sequence: null,
        usage: { input_tokens: 12, output_tokens: 5 },
      },
    });
    const result = await anthropic(target(), ask(), deps);
    expect(result).toMatchObject({
      text: 'Hello, world.',
      usage: { inputTokens: 12, outputTokens: 5 },
    });
  });

  it('asks for JSON in the system prompt, the only place the Messages API offers', async () => {
    await anthropic(target(), ask({ responseFormat: 'json' }), deps);
    expect(model.requests[0]!.body.system).toBe(
      'You are terse.\n\nAnswer in English.\n\nReply with a single JSON object and nothing else.',
    );
    expect(model.requests[0]!.body).not.toHaveProperty('response_format');
  });

  it('calls api.anthropic.com when the target sets no base URL', async () => {
    const urls: string[] = [];
    const recordingFetch: typeof fetch = async (input, init) => {
      urls.push(input instanceof Request ? input.url : input.toString());
      return fetch(`${model.anthropicUrl}/v1/messages`, init);
    };
    await anthropic(target({ baseUrl: undefined }), ask(), { ...deps, fetch: recordingFetch });
    expect(urls).toEqual(['https://api.anthropic.com/v1/messages']);
  });

  it('refuses a bad key as not retryable and never shows the key', async () => {
    const wrong = 'sk-ant-wrong-key-9876543210';
    const error = await anthropic(target(), ask(), { resolveSecret: async () => wrong }).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(ProviderError);
    expect(error).toMatchObject({ code: 'MODEL_AUTH_FAILED', retryable: false, httpStatus: 401 });
    const { message, detail } = error as ProviderError;
    expect(message).toContain('authentication_error');
    expect(`${message} ${JSON.stringify(detail)}`).not.toContain(wrong);
  });

  it('treats an overloaded answer (529) as retryable', async () => {
    model.failNext(1, { status: 529 });
    const error = await anthropic(target(), ask(), deps).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'MODEL_SERVER_ERROR', retryable: true, httpStatus: 529 });
  });

  describe('tools', () => {
    it('offers tools with input_schema, and sends no tools field when none are offered', async () => {
      const result = await anthropic(target(), ask({ tools: [WEATHER] }), deps);
      await anthropic(target(), ask({ tools: [] }), deps);
      expect(model.requests[0]!.body.tools).toEqual([
        {
          name: 'weather_now',
          description: 'The weather in a city now.',
          input_schema: WEATHER.inputSchema,
        },
      ]);
      expect(model.requests[1]!.body).not.toHaveProperty('tools');
      expect(result).toMatchObject({ text: 'model: second question', toolCalls: [] });
    });

    it('returns tool_use blocks as tool calls beside the joined text', async () => {
      model.respondNext({
        content: 'Let me look.',
        toolCalls: [
          { id: 'toolu_abc', name: 'weather_now', arguments: { city: 'Oslo' } },
          { name: 'weather_now', arguments: { city: 'Bergen', days: [1, 2] } },
        ],
      });
      const result = await anthropic(target(), ask({ tools: [WEATHER] }), deps);
      expect(result.text).toBe('Let me look.');
      expect(result.toolCalls).toEqual([
        { id: 'toolu_abc', name: 'weather_now', arguments: { city: 'Oslo' } },
        {
          id: expect.stringMatching(/^toolu_/),
          name: 'weather_now',
          arguments: { city: 'Bergen', days: [1, 2] },
        },
      ]);
    });

    it('reads an answer of tool_use blocks only as empty text', async () => {
      model.respondNext({
        body: {
          id: 'msg_1',
          type: 'message',
          role: 'assistant',
          model: 'claude-test',
          content: [
            { type: 'thinking', thinking: 'Oslo, then.', signature: 'sig' },
            { type: 'tool_use', id: 'toolu_1', name: 'weather_now', input: { city: 'Oslo' } },
          ],
          stop_reason: 'tool_use',
          stop_sequence: null,
          usage: { input_tokens: 20, output_tokens: 8 },
        },
      });
      const result = await anthropic(target(), ask({ tools: [WEATHER] }), deps);
      expect(result).toMatchObject({
        text: '',
        toolCalls: [{ id: 'toolu_1', name: 'weather_now', arguments: { city: 'Oslo' } }],
        usage: { inputTokens: 20, outputTokens: 8 },
      });
    });

    it('gives null arguments when a tool_use input is not an object', async () => {
      model.respondNext({
        toolCalls: [
          { id: 'toolu_1', name: 'weather_now', arguments: '{"city": "Oslo"}' },
          { id: 'toolu_2', name: 'weather_now', arguments: ['Oslo'] },
          { id: 'toolu_3', name: 'weather_now', arguments: null },
        ],
      });
      const result = await anthropic(target(), ask({ tools: [WEATHER] }), deps);
      expect(result.toolCalls).toEqual([
        { id: 'toolu_1', name: 'weather_now', arguments: null },
        { id: 'toolu_2', name: 'weather_now', arguments: null },
        { id: 'toolu_3', name: 'weather_now', arguments: null },
      ]);
    });

    it('refuses a tool_use block without an id as a bad answer', async () => {
      model.respondNext({
        body: {
          content: [{ type: 'tool_use', name: 'weather_now', input: {} }],
          usage: { input_tokens: 1, output_tokens: 1 },
        },
      });
      const error = await anthropic(target(), ask(), deps).catch((e: unknown) => e);
      expect(error).toMatchObject({ code: 'MODEL_BAD_RESPONSE', retryable: true });
      expect((error as ProviderError).message).toContain('tool_use block has no id or name');
    });

    it('sends tool calls as tool_use blocks and each run of results as one user message', async () => {
      const result = await anthropic(
        target(),
        {
          messages: [
            { role: 'system', content: 'You are terse.' },
            { role: 'user', content: 'weather in Oslo and Bergen?' },
            {
              role: 'assistant',
              content: 'Checking both.',
              toolCalls: [
                { id: 'toolu_1', name: 'weather_now', arguments: { city: 'Oslo' } },
                { id: 'toolu_2', name: 'weather_now', arguments: null },
              ],
            },
            { role: 'tool', toolCallId: 'toolu_1', content: '12 degrees' },
            { role: 'tool', toolCallId: 'toolu_2', content: 'error: arguments are not an object' },
            {
              role: 'assistant',
              content: '',
              toolCalls: [{ id: 'toolu_3', name: 'weather_now', arguments: { city: 'Bergen' } }],
            },
            { role: 'tool', toolCallId: 'toolu_3', content: '9 degrees' },
          ],
          responseFormat: 'text',
          tools: [WEATHER],
          traceId: '0af7651916cd43dd8448eb211c80319c',
        },
        deps,
      );
      expect(model.requests[0]!.body.system).toBe('You are terse.');
      expect(model.requests[0]!.body.messages).toEqual([
        { role: 'user', content: 'weather in Oslo and Bergen?' },
        {
          role: 'assistant',
          content: [
            { type: 'text', text: 'Checking both.' },
            { type: 'tool_use', id: 'toolu_1', name: 'weather_now', input: { city: 'Oslo' } },
            { type: 'tool_use', id: 'toolu_2', name: 'weather_now', input: {} },
          ],
        },
        {
          role: 'user',
          content: [
            { type: 'tool_result', tool_use_id: 'toolu_1', content: '12 degrees' },
            {
              type: 'tool_result',
              tool_use_id: 'toolu_2',
              content: 'error: arguments are not an object',
            },
          ],
        },
        {
          role: 'assistant',
          content: [
            { type: 'tool_use', id: 'toolu_3', name: 'weather_now', input: { city: 'Bergen' } },
          ],
        },
        {
          role: 'user',
          content: [{ type: 'tool_result', tool_use_id: 'toolu_3', content: '9 degrees' }],
        },
      ]);
      expect(result).toMatchObject({ text: 'model: weather in Oslo and Bergen?', toolCalls: [] });
    });

    it('writes earlier calls and results as text when the request offers no tools', async () => {
      await anthropic(
        target(),
        {
          messages: [
            { role: 'user', content: 'weather in Oslo?' },
            {
              role: 'assistant',
              content: '',
              toolCalls: [{ id: 'toolu_1', name: 'weather_now', arguments: { city: 'Oslo' } }],
            },
            { role: 'tool', toolCallId: 'toolu_1', content: '12 degrees' },
          ],
          responseFormat: 'text',
          traceId: '0af7651916cd43dd8448eb211c80319c',
        },
        deps,
      );
      const body = model.requests[0]!.body;
      // The API refuses tool_use / tool_result blocks in a request that defines no tools.
      expect(body.tools).toBeUndefined();
      expect(body.messages).toEqual([
        { role: 'user', content: 'weather in Oslo?' },
        { role: 'assistant', content: '[tool call toolu_1: weather_now {"city":"Oslo"}]' },
        { role: 'user', content: '[result of tool call toolu_1]\n12 degrees' },
      ]);
    });
  });
});
