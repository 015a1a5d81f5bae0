import { z } from 'zod';
import type { ModelTarget } from '../../contracts/policyContract.ts';
import type { ModelRequest, ModelResult, ProviderDeps } from '../modelTypes.ts';
import { postJson } from './postJson.ts';
import { resolveApiKey } from './resolveApiKey.ts';

/** The part of a chat completion we read; servers add fields freely. */
const ChatCompletion = z.object({
  choices: z
    .array(z.object({ message: z.object({ content: z.string() }) }))
    .min(1, 'has no choices'),
  // Some local servers leave usage out; their calls then count as free.
  usage: z
    .object({ prompt_tokens: z.int().nonnegative(), completion_tokens: z.int().nonnegative() })
    .optional(),
});

/**
 * Calls an OpenAI-compatible chat completions endpoint (OpenAI, Ollama, vLLM, LiteLLM, …) at
 * `${baseUrl}/chat/completions`. The bearer token is sent only when the target names a key.
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
  const started = performance.now();
  const completion = await postJson({
    provider,
    model,
    url: `${target.baseUrl.replace(/\/+$/, '')}/chat/completions`,
    headers: key ? { authorization: `Bearer ${key}` } : {},
    body: {
      model,
      messages: request.messages.map(({ role, content }) => ({ role, content })),
      max_tokens: target.maxOutputTokens,
      ...(request.responseFormat === 'json' ? { response_format: { type: 'json_object' } } : {}),
    },
    schema: ChatCompletion,
    timeoutMs: target.timeoutMs,
    signal: request.signal,
    secret: key,
    fetch: deps.fetch,
  });
  return {
    text: completion.choices[0]!.message.content,
    provider,
    model,
    usage: {
      inputTokens: completion.usage?.prompt_tokens ?? 0,
      outputTokens: completion.usage?.completion_tokens ?? 0,
    },
    latencyMs: Math.round(performance.now() - started),
  };
}
