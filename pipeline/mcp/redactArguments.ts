import { redactSecrets } from '../sanitize/redactSecrets.ts';

/**
 * A tool call's arguments as the call log may keep them: every string with the project's
 * known credential values and credential-shaped substrings replaced by `[REDACTED]`. Redacted
 * as JSON text, so a value is also caught by its key (`"password": "..."`); the replacement
 * stays inside its string, and if it ever did not, the whole text is kept as one string rather
 * than a guess at the structure.
 */
export function redactArguments(
  args: Record<string, unknown>,
  knownValues: readonly string[],
): Record<string, unknown> {
  const { text, redactions } = redactSecrets(JSON.stringify(args), knownValues);
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
