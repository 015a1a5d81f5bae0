import type { ModelTarget } from '../../contracts/policyContract.ts';
import type { ModelRequest, ModelResult } from '../modelTypes.ts';

/**
 * The offline model: answers at once with the last user message prefixed `echo: ` (as
 * `{"answer": …}` when JSON is asked for). Deterministic and keyless, so a project can run end
 * to end before any provider is configured. It never calls a tool, and tool results (not being
 * user messages) are not echoed. Token counts are a rough four-characters-a-token estimate, so
 * budgets still move.
 */
export function echo(
  target: Extract<ModelTarget, { provider: 'echo' }>,
  request: ModelRequest,
): ModelResult {
  const last = request.messages.findLast((m) => m.role === 'user');
  const reply = `echo: ${last?.content ?? ''}`;
  const text = request.responseFormat === 'json' ? JSON.stringify({ answer: reply }) : reply;
  const input = request.messages.reduce((sum, m) => sum + m.content.length, 0);
  return {
    text,
    toolCalls: [],
    provider: target.provider,
    model: target.model,
    usage: { inputTokens: Math.ceil(input / 4), outputTokens: Math.ceil(text.length / 4) },
    latencyMs: 0,
  };
}
