/** Network error codes that mean no connection was made, so no request can have gone out. */
const BEFORE_SENDING = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'UND_ERR_CONNECT_TIMEOUT',
]);

/**
 * Whether a failed HTTP call surely never reached the peer: the connection itself failed (the
 * code is looked for on the error and along its `cause` chain, where fetch puts it). Anything
 * else — a timeout, a reset, a lost answer — may have been acted on.
 */
export function connectFailed(error: unknown): boolean {
  for (let e = error, depth = 0; e instanceof Error && depth < 5; depth += 1) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && BEFORE_SENDING.has(code)) return true;
    e = e.cause;
  }
  return false;
}
