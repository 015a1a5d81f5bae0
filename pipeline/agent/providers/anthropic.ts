import { z } from 'zod';
import type { ModelTarget } from '../../contracts/policyContract.ts';
import type { ModelRequest, ModelResult, ProviderDeps } from '../modelTypes.ts';
import { postJson } from './postJson.ts';
import { resolveApiKey } from './resolveApiKey.ts';

const ANTHROPIC_URL = 'https://api.anthropic.com';
const ANTHROPIC_VERSION = '2023-06-01';

/**
 * The Messages API has no JSON mode, so a JSON answer is asked for in the system prompt; the
 * sanitize stage still checks the output against the agent's schema.
 */
const JSON_INSTRUCTION = 'Reply with a single JSON object and nothing else.';

/** The part of a Messages API answer we read; blocks other than text are skipped. */
const Message = z.object({
  content: z.array(
    z
      .object({ type: z.string(), text: z.string().optional() })
      .refine(
        (block) => block.type !== 'text' || block.text !== undefined,
        'text block has no text',
      ),
  ),
  usage: z.object({ input_tokens: z.int().nonnegative(), output_tokens: z.int().nonnegative() }),
});

/**
 * Calls Anthropic's Messages API at `${baseUrl}/v1/messages`. System messages are joined into
 * the top-level `system` field, which is where the API wants them.
 */
export async function anthropic(
  target: Extract<ModelTarget, { provider: 'anthropic' }>,
  request: ModelRequest,
  deps: ProviderDeps,
): Promise<ModelResult> {
  const { provider, model } = target;
  const key = await resolveApiKey({ provider, model, ref: target.apiKey }, deps);
  const system = request.messages.filter((m) => m.role === 'system').map((m) => m.content);
  if (request.responseFormat === 'json') system.push(JSON_INSTRUCTION);
  const started = performance.now();
  const message = await postJson({
    provider,
    model,
    url: `${(target.baseUrl ?? ANTHROPIC_URL).replace(/\/+$/, '')}/v1/messages`,
    headers: { 'x-api-key': key, 'anthropic-version': ANTHROPIC_VERSION },
    body: {
      model,
      max_tokens: target.maxOutputTokens,
      ...(system.length > 0 ? { system: system.join('\n\n') } : {}),
      messages: request.messages
        .filter((m) => m.role !== 'system')
        .map(({ role, content }) => ({ role, content })),
    },
    schema: Message,
    timeoutMs: target.timeoutMs,
    signal: request.signal,
    secret: key,
    fetch: deps.fetch,
  });
  return {
    text: message.content
      .filter((block) => block.type === 'text')
      .map((block) => block.text ?? '')
      .join(''),
    provider,
    model,
    usage: { inputTokens: message.usage.input_tokens, outputTokens: message.usage.output_tokens },
    latencyMs: Math.round(performance.now() - started),
  };
}
