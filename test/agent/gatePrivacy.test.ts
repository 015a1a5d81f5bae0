// The privacy gate before each model step (issue 15, item 5): in-process classification of
// what the step would send, and the route's targets kept or the step refused.
import { describe, expect, it } from 'vitest';
import { gatePrivacy } from '../../pipeline/agent/gatePrivacy.ts';
import type { ChatMessage } from '../../pipeline/agent/modelTypes.ts';
import type { ModelTarget } from '../../pipeline/contracts/policyContract.ts';
import { AppError } from '../../pipeline/errors.ts';
import { classifyPii } from '../../pipeline/sanitize/classifyPii.ts';

const target = (model: string): ModelTarget => ({
  provider: 'openai_compatible',
  model,
  baseUrl: 'http://127.0.0.1:9/v1',
  timeoutMs: 60_000,
  maxOutputTokens: 1024,
});
const route = [target('public'), target('private')];
const user = (content: string): ChatMessage[] => [
  { role: 'system', content: 'Support desk: write to help@example.com' },
  { role: 'user', content },
];
const ALL = ['email', 'phone', 'payment_card', 'national_id'] as const;

describe('classifyPii', () => {
  it('finds each class once, in a fixed order, and nothing in plain text', () => {
    expect(classifyPii(['call +1 415 555 0100 or mail a@b.io'], ALL)).toEqual(['email', 'phone']);
    expect(classifyPii(['order 2024-11-03, 1,000 units at 12.50'], ALL)).toEqual([]);
  });

  it('classes a card number as a card, not as a phone', () => {
    expect(classifyPii(['card 4111 1111 1111 1111'], ALL)).toEqual(['payment_card']);
  });

  it('looks only for the classes asked for', () => {
    expect(classifyPii(['mail a@b.io, call +1 415 555 0100'], ['phone'])).toEqual(['phone']);
  });
});

describe('gatePrivacy', () => {
  const access = [{ model: 'private', classes: ['email' as const, 'phone' as const] }];

  it('costs nothing and changes nothing when the project checks no class', () => {
    const out = gatePrivacy(route, user('mail a@b.io'), [], access);
    expect(out).toEqual({ targets: route, decision: null });
  });

  it('keeps the whole route when the input carries none of the classes (the prompt is not checked)', () => {
    const out = gatePrivacy(route, user('what time is it'), ['email'], access);
    expect(out.targets).toEqual(route);
    expect(out.decision).toBeNull();
  });

  it('skips a target that may not see a class found, keeping the order of the rest', () => {
    const out = gatePrivacy(route, user('mail a@b.io'), ['email', 'phone'], access);
    expect(out.targets.map((t) => t.model)).toEqual(['private']);
    expect(out.decision).toEqual({
      classes: ['email'],
      skipped: [{ provider: 'openai_compatible', model: 'public' }],
    });
  });

  it('checks tool results and the arguments of earlier calls too', () => {
    const messages: ChatMessage[] = [
      ...user('look up my account'),
      {
        role: 'assistant',
        content: '',
        toolCalls: [{ id: 'c1', name: 'crm', arguments: { phone: '+44 20 7946 0958' } }],
      },
      { role: 'tool', toolCallId: 'c1', content: 'found' },
    ];
    expect(gatePrivacy(route, messages, ['phone'], access).decision?.classes).toEqual(['phone']);
    const fromResult: ChatMessage[] = [
      ...user('look up my account'),
      { role: 'tool', toolCallId: 'c1', content: 'owner: kim@example.org' },
    ];
    expect(gatePrivacy(route, fromResult, ['email'], access).decision?.classes).toEqual(['email']);
  });

  it('refuses with PRIVACY_BLOCKED, naming the classes and not the data, when no target may see them', () => {
    let thrown: unknown;
    try {
      gatePrivacy(route, user('card 4111 1111 1111 1111'), ['payment_card'], access);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(AppError);
    const error = thrown as AppError;
    expect(error.code).toBe('PRIVACY_BLOCKED');
    expect(error.detail).toMatchObject({ pii_classes: ['payment_card'] });
    expect(JSON.stringify(error.detail) + error.message).not.toContain('4111');
  });

  it('lets echo see everything: it never leaves the process', () => {
    const echo: ModelTarget = { provider: 'echo', model: 'echo' };
    const out = gatePrivacy([target('public'), echo], user('mail a@b.io'), ['email'], undefined);
    expect(out.targets).toEqual([echo]);
  });
});
