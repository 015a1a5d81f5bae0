import { z } from 'zod';
import type { ModelTarget } from '../../contracts/policyContract.ts';
import type {
  ChatMessage,
  ModelRequest,
  ModelResult,
  ProviderDeps,
  ToolCall,
} from '../modelTypes.ts';
import { postJson } from './postJson.ts';
import { resolveApiKey } from './resolveApiKey.ts';

/** The part of a chat completion we read; servers add fields freely. */
const ChatCompletion = z.object({
  choices: z
    .array(
      z.object({
        message: z
          .object({
            // null when the model only calls tools.
            content: z.string().nullish(),
            tool_calls: z
              .array(
                z.object({
                  id: z.string(),
                  // A JSON string as the model wrote it, not necessarily valid JSON.
                  function: z.object({ name: z.string(), arguments: z.string() }),
                }),
              )
              .nullish(),
          })
          .refine(
            (message) =>
              typeof message.content === 'string' || (message.tool_calls ?? []).length > 0,
            'message has neither content nor tool calls',
          ),
      }),
    )
    .min(1, 'has no choices'),
  // Some local servers leave usage out; their calls then count as free.
  usage: z
    .object({ prompt_tokens: z.int().nonnegative(), completion_tokens: z.int().nonnegative() })
    .optional(),
});

/**
 * Calls an OpenAI-compatible chat completions endpoint (OpenAI, Ollama, vLLM, LiteLLM, …) at
 * `${baseUrl}/chat/completions`. The bearer token is sent only when the target names a key.
 * Tools are offered as `function` tools; the model's calls come back with their arguments
 * parsed (null when the model's JSON is broken or not an object).
 */
export async function openaiCompatible(
  target: Extract<ModelTarget, { provider: 'openai_compatible' }>,
  request: ModelRequest,
  deps: ProviderDeps,
): Promise<ModelResult> {
  const { provider, model } = target;
  const key = target.apiKey
    ? await resolveApiKey({ provider, model, ref: target.apiKey }, deps)
    : undefined;
  const tools = request.tools ?? [];
  const started = performance.now();
  const completion = await postJson({
    provider,
    model,
    url: `${target.baseUrl.replace(/\/+$/, '')}/chat/completions`,
    headers: key ? { authorization: `Bearer ${key}` } : {},
    body: {
      model,
      messages: request.messages.map(toWire),
      max_tokens: target.maxOutputTokens,
      ...(request.responseFormat === 'json' ? { response_format: { type: 'json_object' } } : {}),
      ...(tools.length > 0
        ? {
            tools: tools.map(({ name, description, inputSchema }) => ({
              type: 'function',
              function: { name, description, parameters: inputSchema },
            })),
          }
        : {}),
    },
    schema: ChatCompletion,
    timeoutMs: target.timeoutMs,
    signal: request.signal,
    secret: key,
    fetch: deps.fetch,
  });
  const { message } = completion.choices[0]!;
  return {
    text: message.content ?? '',
    toolCalls: (message.tool_calls ?? []).map(({ id, function: call }): ToolCall => ({
      id,
      name: call.name,
      arguments: parseArguments(call.arguments),
    })),
    provider,
    model,
    usage: {
      inputTokens: completion.usage?.prompt_tokens ?? 0,
      outputTokens: completion.usage?.completion_tokens ?? 0,
    },
    latencyMs: Math.round(performance.now() - started),
  };
}

/** One message in the chat completions format. */
function toWire(message: ChatMessage): Record<string, unknown> {
  switch (message.role) {
    case 'system':
    case 'user':
      return { role: message.role, content: message.content };
    case 'assistant': {
      const calls = message.toolCalls ?? [];
      if (calls.length === 0) return { role: 'assistant', content: message.content };
      return {
        role: 'assistant',
        // The API wants null rather than an empty string beside tool calls.
        content: message.content || null,
        tool_calls: calls.map(({ id, name, arguments: args }) => ({
          id,
          type: 'function',
          function: { name, arguments: JSON.stringify(args ?? {}) },
        })),
      };
    }
    case 'tool':
      return { role: 'tool', tool_call_id: message.toolCallId, content: message.content };
  }
}

/** The arguments a model wrote as a JSON string, or null unless they are a JSON object. */
function parseArguments(text: string): Record<string, unknown> | null {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return null;
  }
  return value !== null && typeof value === 'object' && !Array.isArray(value)
    ? (value as Record<string, unknown>)
    : null;
}
