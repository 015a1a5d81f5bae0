import type { PiiClass } from '../contracts/common.ts';
import { redactPii } from './redactPii.ts';

// redactPii's own order: a card or a national id is taken out before phones are looked for,
// so a number that is one of those is classed as such and not as a phone.
const ORDER: readonly PiiClass[] = ['email', 'payment_card', 'national_id', 'phone'];

/**
 * The classes of personal data among `classes` that `texts` carry, found with the patterns
 * {@link redactPii} redacts (so what the output gate would redact is what the input gate
 * finds), in a fixed order. In process and regex only; `address` and `person_name` are
 * never found.
 */
export function classifyPii(texts: readonly string[], classes: readonly PiiClass[]): PiiClass[] {
  const found: PiiClass[] = [];
  const joined = texts.join('\n');
  let rest = joined;
  for (const cls of ORDER) {
    if (!classes.includes(cls)) continue;
    const result = redactPii(rest, [cls]);
    if (result.redactions === 0) continue;
    found.push(cls);
    rest = result.text;
  }
  return found;
}
