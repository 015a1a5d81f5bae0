/** What a redacted credential is replaced with. */
export const REDACTED = '[REDACTED]';

/** Known values shorter than this are ignored: they would redact ordinary words. */
const MIN_KNOWN_VALUE_LENGTH = 6;

/**
 * One credential shape. `regex` carries the `g` and `d` flags. The part replaced is the span of
 * the first named group whose name starts with `secret` that took part in the match (so a key
 * name, the word `Bearer` or a PEM header is kept), else the whole match. `accept`, when
 * present, vetoes a match that only looks like a credential (a variable name, a placeholder,
 * a word of prose).
 */
export interface SecretPattern {
  readonly name: string;
  readonly regex: RegExp;
  readonly accept?: (secret: string, match: RegExpExecArray) => boolean;
}

/** Names a value is stored under in config, env files, query strings and headers. */
const KEY_WORD =
  '(?:pass(?:word|wd|phrase)|pwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|credentials?)';
const KEY_WORD_RE = new RegExp(KEY_WORD, 'i');

/** Values that name or stand for a credential rather than being one. */
const PLACEHOLDER =
  /^(?:null|nil|none|undefined|true|false|string|str|number|int|integer|bool|boolean|any|unknown|bytes|object|optional|required|empty|redacted|\[redacted\]|\*+|x+|\.{2,}|…|<[^>]*>|\$\{?[A-Za-z_][\w.]*\}?|%[A-Za-z_]\w*%|\{\{.*\}\})$/i;

/** Random-looking: has a digit, or at least two lower-to-upper humps (base64 without digits). */
function looksRandom(value: string): boolean {
  return /\d/.test(value) || (value.match(/[a-z][A-Z]/g)?.length ?? 0) >= 2;
}

function hasDigit(value: string): boolean {
  return /\d/.test(value);
}

/**
 * Whether the value of a `key=value` / `key: value` assignment is a credential rather than code
 * or prose that happens to follow a credential-ish key name.
 */
function acceptAssignment(secret: string, match: RegExpExecArray): boolean {
  const groups = match.groups ?? {};
  if (secret.length === 0 || PLACEHOLDER.test(secret)) return false;
  if (groups['secret3'] === undefined) return true;
  if (secret.length < 3) return false;
  const end = match.index + match[0].length;
  const next = match.input.charAt(end);
  // `token = getToken()`, `password: Option<String>`, `secret=cfg[0]`: code, not a value.
  if (next === '(' || next === '[' || next === '<') return false;
  if (/^[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)+$/.test(secret)) return false;
  const identifier = /^[A-Za-z_$]+$/.test(secret);
  // `token=token`, `password=db_password`: passing a variable along.
  if (identifier && KEY_WORD_RE.test(secret)) return false;
  const spaced = (groups['pre'] ?? '') !== '' || (groups['post'] ?? '') !== '';
  if (groups['sep'] === '=' && spaced && identifier) return false;
  if (groups['sep'] === ':' && /^[A-Za-z]+$/.test(secret)) {
    // "Reset your password: click the link" — the sentence goes on after the word.
    const restOfLine = match.input.slice(end).split('\n', 1)[0] ?? '';
    if (/[A-Za-z]/.test(restOfLine)) return false;
  }
  return true;
}

/**
 * The credential shapes {@link redactSecrets} looks for, in the order they are applied: the
 * most specific first, so a vendor key inside an assignment or a JWT after `Bearer` is
 * reported under its own name and the later, looser patterns see `[REDACTED]` instead.
 */
export const SECRET_PATTERNS: readonly SecretPattern[] = [
  {
    name: 'pem_private_key',
    regex:
      /-----BEGIN (?<label>[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?)-----\r?\n?(?<secret>[\s\S]*?)(?:\r?\n?-----END \k<label>-----|$)/dg,
  },
  {
    name: 'url_credentials',
    regex: /\b[a-z][a-z0-9+.-]{0,31}:\/\/[^\s:@/]{1,256}:(?<secret>[^\s@/]+)@/dgi,
    accept: (secret) => !PLACEHOLDER.test(secret),
  },
  {
    name: 'jwt',
    regex: /\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*/dg,
  },
  { name: 'anthropic_key', regex: /\bsk-ant-[A-Za-z0-9_-]{20,}/dg },
  {
    name: 'openai_key',
    regex: /\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}/dg,
    accept: hasDigit,
  },
  { name: 'aws_access_key_id', regex: /\b(?:AKIA|ASIA)[0-9A-Z]{16}\b/dg },
  { name: 'github_token', regex: /\bgh[pousr]_[A-Za-z0-9]{36,}\b/dg },
  { name: 'github_pat', regex: /\bgithub_pat_[A-Za-z0-9_]{22,}/dg },
  { name: 'slack_token', regex: /\bxox[abprs]-[A-Za-z0-9-]{10,}/dg, accept: hasDigit },
  { name: 'slack_app_token', regex: /\bxapp-\d-[A-Za-z0-9-]{10,}/dg },
  { name: 'stripe_key', regex: /\b[rs]k_(?:live|test)_[A-Za-z0-9]{16,}/dg },
  { name: 'google_api_key', regex: /\bAIza[0-9A-Za-z_-]{35}(?![A-Za-z0-9_-])/dg },
  {
    name: 'telegram_bot_token',
    regex: /(?<![\d:])\d{6,12}:[A-Za-z0-9_-]{35}(?![A-Za-z0-9_-])/dg,
  },
  {
    name: 'authorization_header',
    regex: /\b(?:Bearer|Basic)[ \t]+(?<secret>[A-Za-z0-9\-._~+/]{8,}=*)/dgi,
    accept: looksRandom,
  },
  {
    name: 'assignment',
    regex: new RegExp(
      `${KEY_WORD}["']?(?<pre>[ \\t]*)(?<sep>[:=])(?![=>:])(?<post>[ \\t]*)` +
        `(?:"(?<secret>[^"\\n]*)"|'(?<secret2>[^'\\n]*)'|(?<secret3>[^\\s"'\`<>()\\[\\]{},;&]+))`,
      'dgi',
    ),
    accept: acceptAssignment,
  },
];

/** Start and end (exclusive) of the part of a match that is the credential. */
function secretSpan(match: RegExpExecArray): readonly [number, number] | undefined {
  const named = match.indices?.groups ?? {};
  for (const [name, span] of Object.entries(named)) {
    if (name.startsWith('secret') && span !== undefined) return span;
  }
  return match.indices?.[0];
}

function applyPattern(text: string, pattern: SecretPattern): { text: string; redactions: number } {
  let out = '';
  let last = 0;
  let redactions = 0;
  for (const match of text.matchAll(pattern.regex)) {
    const span = secretSpan(match);
    if (span === undefined) continue;
    const secret = text.slice(span[0], span[1]);
    if (pattern.accept !== undefined && !pattern.accept(secret, match)) continue;
    out += text.slice(last, span[0]) + REDACTED;
    last = span[1];
    redactions += 1;
  }
  return { text: out + text.slice(last), redactions };
}

/** The forms a known value can take in output: as is, URL-encoded, inside a JSON string. */
function variantsOf(value: string): string[] {
  return [value, encodeURIComponent(value), JSON.stringify(value).slice(1, -1)];
}

/** Only the known credential values (and their encodings), no pattern matching. */
export function redactKnownValues(
  text: string,
  knownValues: readonly string[],
): { text: string; redactions: number } {
  return redactKnown(text, knownValues);
}

function redactKnown(
  text: string,
  knownValues: readonly string[],
): { text: string; redactions: number } {
  const values = [
    ...new Set(
      knownValues
        .filter((v) => v.length >= MIN_KNOWN_VALUE_LENGTH)
        .flatMap(variantsOf)
        .filter((v) => v.length >= MIN_KNOWN_VALUE_LENGTH),
    ),
  ].sort((a, b) => b.length - a.length);
  const spans: [number, number][] = [];
  for (const value of values) {
    // Stepping by one finds overlapping occurrences too; merged below.
    for (let at = text.indexOf(value); at !== -1; at = text.indexOf(value, at + 1)) {
      spans.push([at, at + value.length]);
    }
  }
  if (spans.length === 0) return { text, redactions: 0 };
  spans.sort((a, b) => a[0] - b[0]);
  let out = '';
  let last = 0;
  let redactions = 0;
  let current: [number, number] | undefined;
  const flush = (span: [number, number]) => {
    out += text.slice(last, span[0]) + REDACTED;
    last = span[1];
    redactions += 1;
  };
  for (const span of spans) {
    if (current !== undefined && span[0] <= current[1]) {
      current[1] = Math.max(current[1], span[1]);
    } else {
      if (current !== undefined) flush(current);
      current = [span[0], span[1]];
    }
  }
  if (current !== undefined) flush(current);
  return { text: out + text.slice(last), redactions };
}

/**
 * Removes credentials from text bound for a user. First every occurrence of each known
 * credential value (the project's resolved secrets; values under 6 characters are ignored,
 * and the URL-encoded and JSON-escaped forms are matched too), with overlapping occurrences
 * merged into one `[REDACTED]`; then the shapes in {@link SECRET_PATTERNS}. A key name, the
 * word `Bearer` and PEM header lines are kept; only the credential itself is replaced.
 * `redactions` counts the replaced spans.
 */
export function redactSecrets(
  text: string,
  knownValues: readonly string[],
): { text: string; redactions: number } {
  let result = redactKnown(text, knownValues);
  for (const pattern of SECRET_PATTERNS) {
    const next = applyPattern(result.text, pattern);
    result = { text: next.text, redactions: result.redactions + next.redactions };
  }
  return result;
}
