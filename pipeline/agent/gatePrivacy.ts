import type { PiiClass } from '../contracts/common.ts';
import type { ModelTarget, PolicyContract } from '../contracts/policyContract.ts';
import { NonRetryableError } from '../errors.ts';
import { classifyPii } from '../sanitize/classifyPii.ts';
import type { ChatMessage } from './modelTypes.ts';

/** What the gate found and skipped for one model step: class names and targets, never the data. */
export type PrivacyDecision = {
  classes: PiiClass[];
  skipped: { provider: string; model: string }[];
};

/**
 * The privacy gate before a model step: classifies what the step would send (every message
 * but the system prompt, which is the tenant's own artifact: the user's text, the history,
 * attachment notes, tool results and the calls' arguments) for the project's `piiClasses`,
 * and keeps only the route's targets allowed to see every class found (`privacy.piiAccess`;
 * `echo` never leaves the process). None left → `PRIVACY_BLOCKED`, before anything is sent
 * or reserved. With no classes to check it costs nothing; `decision` is null when nothing
 * was found.
 */
export function gatePrivacy(
  targets: readonly ModelTarget[],
  messages: readonly ChatMessage[],
  checked: readonly PiiClass[],
  access: PolicyContract['privacy']['piiAccess'],
): { targets: readonly ModelTarget[]; decision: PrivacyDecision | null } {
  if (checked.length === 0) return { targets, decision: null };
  const texts: string[] = [];
  for (const m of messages) {
    if (m.role === 'system') continue;
    if (m.content) texts.push(m.content);
    if (m.role === 'assistant') {
      for (const call of m.toolCalls ?? []) texts.push(JSON.stringify(call.arguments ?? {}));
    }
  }
  const classes = classifyPii(texts, checked);
  if (classes.length === 0) return { targets, decision: null };
  const maySee = (t: ModelTarget) => {
    if (t.provider === 'echo') return true;
    const allowed = new Set(
      (access ?? [])
        .filter((a) => a.model === t.model && (a.provider ?? t.provider) === t.provider)
        .flatMap((a) => a.classes),
    );
    return classes.every((c) => allowed.has(c));
  };
  const kept = targets.filter(maySee);
  const skipped = targets
    .filter((t) => !kept.includes(t))
    .map((t) => ({ provider: t.provider, model: t.model }));
  if (kept.length === 0) {
    throw new NonRetryableError(
      'PRIVACY_BLOCKED',
      `The message carries personal data (${classes.join(', ')}) that no model on this route may see.`,
      { status: 422, detail: { pii_classes: classes, skipped } },
    );
  }
  return { targets: kept, decision: { classes, skipped } };
}
