/**
 * Reads an HTTP `Retry-After` header (seconds, or an HTTP date) as milliseconds to wait;
 * `fallbackMs` when it is absent or unreadable. Never negative.
 */
export function retryAfterMs(
  header: string | null | undefined,
  fallbackMs: number,
  now: number = Date.now(),
): number {
  if (header === null || header === undefined || header.trim() === '') return fallbackMs;
  const value = header.trim();
  if (/^\d+(\.\d+)?$/.test(value)) return Math.ceil(Number(value) * 1000);
  const at = Date.parse(value);
  return Number.isNaN(at) ? fallbackMs : Math.max(0, at - now);
}
