import { describe, expect, it } from 'vitest';
import type { ModelRequest } from '../../pipeline/agent/modelTypes.ts';
import { echo } from '../../pipeline/agent/providers/echo.ts';
import { ModelTarget } from '../../pipeline/contracts/policyContract.ts';

const target = ModelTarget.parse({ provider: 'echo' });
if (target.provider !== 'echo') throw new Error('not an echo target');

function ask(responseFormat: ModelRequest['responseFormat']): ModelRequest {
  return {
    messages: [
      { role: 'system', content: 'prompt' },
      { role: 'user', content: 'first' },
      { role: 'assistant', content: 'echo: first' },
      { role: 'user', content: 'second' },
    ],
    responseFormat,
    traceId: '0af7651916cd43dd8448eb211c80319c',
  };
}

describe('echo', () => {
  it('answers the last user message, prefixed, at once and the same way every time', () => {
    const result = echo(target, ask('text'));
    expect(result).toEqual({
      text: 'echo: second',
      toolCalls: [],
      provider: 'echo',
      model: 'echo',
      usage: { inputTokens: 7, outputTokens: 3 },
      latencyMs: 0,
    });
    expect(echo(target, ask('text'))).toEqual(result);
  });

  it('wraps the answer in {"answer": …} when JSON is asked for', () => {
    expect(JSON.parse(echo(target, ask('json')).text)).toEqual({ answer: 'echo: second' });
  });

  it('never calls a tool, even when offered one, and echoes the user rather than a tool result', () => {
    const result = echo(target, {
      messages: [
        { role: 'user', content: 'weather?' },
        {
          role: 'assistant',
          content: '',
          toolCalls: [{ id: 'call_1', name: 'weather', arguments: { city: 'Oslo' } }],
        },
        { role: 'tool', toolCallId: 'call_1', content: '12 degrees' },
      ],
      responseFormat: 'text',
      tools: [{ name: 'weather', description: 'Weather now', inputSchema: { type: 'object' } }],
      traceId: '0af7651916cd43dd8448eb211c80319c',
    });
    expect(result).toMatchObject({ text: 'echo: weather?', toolCalls: [] });
  });

  it('answers an empty echo when there is no user message', () => {
    const result = echo(target, {
      messages: [{ role: 'system', content: 'prompt' }],
      responseFormat: 'text',
      traceId: '0af7651916cd43dd8448eb211c80319c',
    });
    expect(result.text).toBe('echo: ');
  });
});
