/**
 * Reads an HTTP `Retry-After` header as milliseconds to wait: delta-seconds (`120`, leniently
 * also `1.5`) or an HTTP-date (`Wed, 21 Oct 2015 07:28:00 GMT`, counted from `now`, never
 * negative). Undefined when the header is absent, empty or neither (a negative number, a
 * bare word), so each caller says what it waits then. The one parser for model providers and
 * channels alike.
 */
export function retryAfterMs(
  header: string | null | undefined,
  now: number = Date.now(),
): number | undefined {
  const value = header?.trim() ?? '';
  if (value === '') return undefined;
  if (/^\d+(\.\d+)?$/.test(value)) return Math.ceil(Number(value) * 1000);
  // A date names its day or month; without a letter Date.parse would read "-5" as a year.
  if (!/[a-z]/i.test(value)) return undefined;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}
