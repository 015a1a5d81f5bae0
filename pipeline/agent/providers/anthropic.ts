import { z } from 'zod';
import { ANTHROPIC_BASE_URL, type ModelTarget } from '../../contracts/policyContract.ts';
import type {
  ChatMessage,
  ModelRequest,
  ModelResult,
  ProviderDeps,
  ToolCall,
} from '../modelTypes.ts';
import { postJson } from './postJson.ts';
import { resolveApiKey } from './resolveApiKey.ts';

const ANTHROPIC_VERSION = '2023-06-01';

/**
 * The Messages API has no JSON mode, so a JSON answer is asked for in the system prompt; the
 * sanitize stage still checks the output against the agent's schema.
 */
const JSON_INSTRUCTION = 'Reply with a single JSON object and nothing else.';

/** The part of a Messages API answer we read; blocks other than text and tool_use are skipped. */
const Message = z.object({
  content: z.array(
    z
      .object({
        type: z.string(),
        text: z.string().optional(),
        id: z.string().optional(),
        name: z.string().optional(),
        input: z.unknown().optional(),
      })
      .refine(
        (block) => block.type !== 'text' || block.text !== undefined,
        'text block has no text',
      )
      .refine(
        (block) =>
          block.type !== 'tool_use' || (block.id !== undefined && block.name !== undefined),
        'tool_use block has no id or name',
      ),
  ),
  usage: z.object({ input_tokens: z.int().nonnegative(), output_tokens: z.int().nonnegative() }),
});

/**
 * Calls Anthropic's Messages API at `${baseUrl}/v1/messages`. System messages are joined into
 * the top-level `system` field, which is where the API wants them. Tools are offered with their
 * JSON Schema as `input_schema`; `tool_use` blocks in the answer become tool calls.
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
  const tools = request.tools ?? [];
  const started = performance.now();
  const message = await postJson({
    provider,
    model,
    url: `${(target.baseUrl ?? ANTHROPIC_BASE_URL).replace(/\/+$/, '')}/v1/messages`,
    headers: { 'x-api-key': key, 'anthropic-version': ANTHROPIC_VERSION },
    body: {
      model,
      max_tokens: target.maxOutputTokens,
      ...(system.length > 0 ? { system: system.join('\n\n') } : {}),
      messages: toWire(request.messages, tools.length > 0),
      ...(tools.length > 0
        ? {
            tools: tools.map(({ name, description, inputSchema }) => ({
              name,
              description,
              input_schema: inputSchema,
            })),
          }
        : {}),
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
    toolCalls: message.content
      .filter((block) => block.type === 'tool_use')
      .map((block): ToolCall => ({
        id: block.id ?? '',
        name: block.name ?? '',
        arguments: isPlainObject(block.input) ? block.input : null,
      })),
    provider,
    model,
    usage: { inputTokens: message.usage.input_tokens, outputTokens: message.usage.output_tokens },
    latencyMs: Math.round(performance.now() - started),
  };
}

type WireBlock = Record<string, unknown>;
type WireMessage = { role: 'user' | 'assistant'; content: string | WireBlock[] };

/**
 * The conversation in the Messages API format, system messages left out. A run of tool messages
 * becomes one user message of `tool_result` blocks: the API wants every result of an assistant
 * turn in the user message right after it. A request that offers no tools may not carry
 * `tool_use` or `tool_result` blocks at all (the API refuses it: a loop's last step, or one
 * whose tool servers are down), so then the earlier calls and results go as plain text.
 */
function toWire(messages: readonly ChatMessage[], withTools: boolean): WireMessage[] {
  if (!withTools) return toWire(messages.map(asText), true);
  const wire: WireMessage[] = [];
  let results: WireBlock[] | null = null;
  for (const message of messages) {
    if (message.role === 'system') continue;
    if (message.role === 'tool') {
      const block = {
        type: 'tool_result',
        tool_use_id: message.toolCallId,
        content: message.content,
      };
      if (results) results.push(block);
      else wire.push({ role: 'user', content: (results = [block]) });
      continue;
    }
    results = null;
    const calls = message.role === 'assistant' ? (message.toolCalls ?? []) : [];
    if (calls.length === 0) {
      wire.push({ role: message.role, content: message.content });
      continue;
    }
    wire.push({
      role: 'assistant',
      content: [
        ...(message.content === '' ? [] : [{ type: 'text', text: message.content }]),
        // The API takes only an object as input; a call whose arguments were broken sends {}.
        ...calls.map(({ id, name, arguments: args }) => ({
          type: 'tool_use',
          id,
          name,
          input: args ?? {},
        })),
      ],
    });
  }
  return wire;
}

/** A message with its tool calls or tool result written out as text. */
function asText(message: ChatMessage): ChatMessage {
  if (message.role === 'tool') {
    return {
      role: 'user',
      content: `[result of tool call ${message.toolCallId}]\n${message.content}`,
    };
  }
  if (message.role !== 'assistant' || !message.toolCalls?.length) return message;
  const calls = message.toolCalls.map(
    (c) => `[tool call ${c.id}: ${c.name} ${JSON.stringify(c.arguments ?? {})}]`,
  );
  return { role: 'assistant', content: [message.content, ...calls].filter(Boolean).join('\n') };
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}
