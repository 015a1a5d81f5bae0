import { redactKnownValues, redactSecrets } from '../sanitize/redactSecrets.ts';

/**
 * A tool call's arguments as the call log may keep them: every string with the project's
 * known credential values and credential-shaped substrings replaced by `[REDACTED]`. Redacted
 * as JSON text, so a value is also caught by its key (`"password": "..."`); the replacement
 * stays inside its string, and if it ever did not, the whole text is kept as one string rather
 * than a guess at the structure. With `patterns: false` only the known values go: for a run's
 * call, whose stored arguments are the ones the call is made with, a credential-shaped
 * substring may be the very argument the model meant.
 */
export function redactArguments(
  args: Record<string, unknown>,
  knownValues: readonly string[],
  { patterns = true }: { patterns?: boolean } = {},
): Record<string, unknown> {
  const json = JSON.stringify(args);
  const { text, redactions } = patterns
    ? redactSecrets(json, knownValues)
    : redactKnownValues(json, knownValues);
  if (redactions === 0) return args;
  try {
    const parsed = JSON.parse(text) as unknown;
    if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)) {
      return parsed as Record<string, unknown>;
    }
  } catch {
    // fall through: keep the redacted text
  }
  return { redacted: text };
}
