/**
 * Whether Postgres can store `text` as it is: no NUL (refused by `text` and `jsonb` alike) and
 * no unpaired UTF-16 surrogate (refused by `jsonb` as an escape, and not valid Unicode text).
 */
export function isStorableText(text: string): boolean {
  return text.isWellFormed() && !text.includes('\u0000');
}

/** What {@link isStorableText} refuses, said where a field is named. */
export const UNSTORABLE_TEXT_MESSAGE = 'must not hold a NUL or an unpaired surrogate';

/**
 * `value` with every string in it (object keys too) made storable: each NUL and each unpaired
 * surrogate becomes U+FFFD. One code unit for one, so UTF-16 offsets a channel sends with the
 * text (LINE mention and emoji indexes) still point at the same characters. For the small,
 * already-parsed values ingress stores; other values are returned as they are.
 */
export function toStorable<T>(value: T): T {
  if (typeof value === 'string') {
    return (
      isStorableText(value) ? value : value.toWellFormed().replaceAll('\u0000', '\ufffd')
    ) as T;
  }
  if (Array.isArray(value)) return value.map(toStorable) as T;
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => [toStorable(k), toStorable(v)]),
    ) as T;
  }
  return value;
}
