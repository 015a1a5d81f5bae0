import { createHash, timingSafeEqual } from 'node:crypto';

/**
 * Checks the `X-Telegram-Bot-Api-Secret-Token` header against the account's webhook secret.
 * Both sides are hashed first so the comparison takes the same time whatever the header's
 * length or content. A missing header or an empty expected secret never matches.
 */
export function verifyTelegramSecret(header: string | undefined, expected: string): boolean {
  if (header === undefined || header === '' || expected === '') return false;
  return timingSafeEqual(sha256(header), sha256(expected));
}

function sha256(value: string): Buffer {
  return createHash('sha256').update(value, 'utf8').digest();
}
