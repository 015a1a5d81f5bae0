import { randomBytes } from 'node:crypto';

/** The W3C trace id of an incoming `traceparent` header, or a fresh one. */
export function traceIdFrom(traceparent: string | undefined): string {
  const match = /^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$/.exec(traceparent ?? '');
  if (match && !/^0+$/.test(match[1]!)) return match[1]!;
  return randomBytes(16).toString('hex');
}
