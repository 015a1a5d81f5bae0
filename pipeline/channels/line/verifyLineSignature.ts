import { validateSignature } from '@line/bot-sdk';

/** A SHA-256 HMAC in base64: 43 characters and one `=`. */
const BASE64_SHA256 = /^[A-Za-z0-9+/]{43}=$/;

/**
 * Checks the `x-line-signature` header: base64 HMAC-SHA256 of the raw request body, keyed
 * with the channel secret. It must be given the bytes exactly as received, before any JSON
 * parsing. A missing header, an empty secret, or a header that is not exactly one base64
 * digest never matches (Node's base64 decoder would skip trailing junk after the padding).
 */
export function verifyLineSignature(
  rawBody: Buffer | string,
  channelSecret: string,
  signature: string | undefined,
): boolean {
  if (signature === undefined || channelSecret === '' || !BASE64_SHA256.test(signature)) {
    return false;
  }
  return validateSignature(rawBody, channelSecret, signature);
}
