import { redactSecrets } from '../pipeline/sanitize/redactSecrets.ts';

/** How many `cause` links are followed; a deeper chain ends in `{ type: 'truncated' }`. */
const MAX_CAUSE_DEPTH = 4;

/** An error as a log line holds it: what it is and where it came from, nothing it carried. */
export type SerializedError = {
  type: string;
  message?: string;
  stack?: string;
  code?: string;
  status?: number;
  reason?: string;
  cause?: SerializedError;
  errors?: SerializedError[];
};

/**
 * The log serializer of every error (`err`, `error`, `cause`): an allow-list, not pino's
 * copy of every property. Errors carry what the client sent — Node's HTTP parser hangs the
 * raw bytes on `rawPacket` (a Buffer, printed as a decimal byte list no grep finds), HTTP
 * clients hang `headers`, `config`, `request` and `body` — so only the type, message, stack,
 * code, status, the parser's fixed `reason` and the cause chain are kept, and the text ones
 * pass through the credential shapes of {@link redactSecrets} (a bearer token, `token: …`
 * or an AwoooP API key quoted in a message is replaced). A non-error is kept as its type,
 * or as its scrubbed text when it is a string (`err: error.message`).
 */
export function serializeError(value: unknown, depth = 0): SerializedError | string {
  if (typeof value === 'string') return scrub(value);
  if (value === null || typeof value !== 'object') return { type: typeof value };
  if (depth > MAX_CAUSE_DEPTH) return { type: 'truncated' };
  const error = value as Record<string, unknown>;
  const out: SerializedError = { type: typeName(value) };
  if (typeof error['message'] === 'string') out.message = scrub(error['message']);
  if (typeof error['stack'] === 'string') out.stack = scrub(error['stack']);
  if (typeof error['code'] === 'string') out.code = scrub(error['code']);
  const status = error['status'] ?? error['statusCode'];
  if (typeof status === 'number') out.status = status;
  // llhttp's reasons are fixed phrases ("Invalid header value char"), never request bytes.
  if (typeof error['reason'] === 'string' && out.code?.startsWith('HPE_')) {
    out.reason = scrub(error['reason']);
  }
  if (error['cause'] !== undefined) out.cause = asObject(serializeError(error['cause'], depth + 1));
  if (Array.isArray(error['errors'])) {
    out.errors = error['errors']
      .slice(0, 10)
      .map((e: unknown) => asObject(serializeError(e, depth + 1)));
  }
  return out;
}

function scrub(text: string): string {
  return redactSecrets(text, []).text;
}

function asObject(value: SerializedError | string): SerializedError {
  return typeof value === 'string' ? { type: 'string', message: value } : value;
}

function typeName(value: object): string {
  const name = (value.constructor as { name?: unknown } | undefined)?.name;
  return typeof name === 'string' && name !== '' ? name : 'Object';
}
