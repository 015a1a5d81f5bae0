import type { ModelTarget } from '../contracts/policyContract.ts';

/**
 * A target whose call waits at most the runtime's `timeouts.modelMs`, as a tool call waits at
 * most `timeouts.toolMs`: the target's own `timeoutMs` is kept when it is shorter.
 */
export function capModelTimeout(target: ModelTarget, modelMs: number): ModelTarget {
  if (target.provider === 'echo') return target;
  return { ...target, timeoutMs: Math.min(target.timeoutMs, modelMs) };
}
