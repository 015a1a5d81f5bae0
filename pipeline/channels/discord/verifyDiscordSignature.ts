import { createPublicKey, verify, type KeyObject } from 'node:crypto';

/** How far a request's timestamp may be from now before it is refused as a replay: 5 minutes. */
export const DISCORD_TIMESTAMP_TOLERANCE_S = 5 * 60;

/** The DER prefix of an Ed25519 SubjectPublicKeyInfo: the 32 raw key bytes follow it. */
const ED25519_SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

/** What a Discord interaction request carries to prove it came from Discord. */
export type DiscordSignatureHeaders = {
  /** `X-Signature-Ed25519`: the hex Ed25519 signature. */
  signature: string | undefined;
  /** `X-Signature-Timestamp`: Unix seconds when Discord signed it. */
  timestamp: string | undefined;
};

/** The application's public key (64 hex characters) as a key `crypto.verify` takes. */
export function discordPublicKey(hex: string): KeyObject {
  return createPublicKey({
    key: Buffer.concat([ED25519_SPKI_PREFIX, Buffer.from(hex, 'hex')]),
    format: 'der',
    type: 'spki',
  });
}

/**
 * Checks a Discord Interactions request: an Ed25519 signature, by the application's public
 * key, over the `X-Signature-Timestamp` header's bytes followed by the raw body, exactly as
 * received. A timestamp more than {@link DISCORD_TIMESTAMP_TOLERANCE_S} from `nowMs` either way
 * is refused even when signed (a replayed request), and so is a missing or malformed header.
 */
export function verifyDiscordSignature(
  rawBody: Buffer,
  publicKeyHex: string,
  { signature, timestamp }: DiscordSignatureHeaders,
  nowMs: number = Date.now(),
): boolean {
  if (signature === undefined || timestamp === undefined) return false;
  if (!/^\d{1,12}$/.test(timestamp) || !/^[0-9a-fA-F]{128}$/.test(signature)) return false;
  if (!/^[0-9a-fA-F]{64}$/.test(publicKeyHex)) return false;
  if (Math.abs(nowMs / 1000 - Number(timestamp)) > DISCORD_TIMESTAMP_TOLERANCE_S) return false;
  try {
    return verify(
      null,
      Buffer.concat([Buffer.from(timestamp, 'utf8'), rawBody]),
      discordPublicKey(publicKeyHex),
      Buffer.from(signature, 'hex'),
    );
  } catch {
    // A key that is not a point on the curve: nothing it could have signed.
    return false;
  }
}
