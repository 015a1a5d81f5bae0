import { createHmac, timingSafeEqual } from 'node:crypto';

/** How far a request's timestamp may be from now before it is refused as a replay: 5 minutes. */
export const SLACK_TIMESTAMP_TOLERANCE_S = 5 * 60;

/** `v0=` and a hex SHA-256 HMAC. */
const V0_SIGNATURE = /^v0=[0-9a-f]{64}$/;

/** What a Slack request carries to prove it came from Slack. */
export type SlackSignatureHeaders = {
  /** `X-Slack-Signature`: `v0=` and the hex HMAC. */
  signature: string | undefined;
  /** `X-Slack-Request-Timestamp`: Unix seconds when Slack signed it. */
  timestamp: string | undefined;
};

/**
 * Checks a Slack request's `v0` signature: HMAC-SHA256, keyed with the app's signing secret,
 * over `v0:{timestamp}:{rawBody}`, hex, compared in constant time with `X-Slack-Signature`.
 * It must be given the body's bytes exactly as received. A timestamp more than
 * {@link SLACK_TIMESTAMP_TOLERANCE_S} from `nowMs` either way is refused even when signed (a
 * replayed request), and so is a missing header, a malformed one or an empty secret.
 */
export function verifySlackSignature(
  rawBody: Buffer,
  signingSecret: string,
  { signature, timestamp }: SlackSignatureHeaders,
  nowMs: number = Date.now(),
): boolean {
  if (signingSecret === '' || signature === undefined || timestamp === undefined) return false;
  if (!/^\d{1,12}$/.test(timestamp) || !V0_SIGNATURE.test(signature)) return false;
  if (Math.abs(nowMs / 1000 - Number(timestamp)) > SLACK_TIMESTAMP_TOLERANCE_S) return false;
  const expected = signSlackRequest(rawBody, signingSecret, timestamp);
  return timingSafeEqual(Buffer.from(signature, 'ascii'), Buffer.from(expected, 'ascii'));
}

/** The `X-Slack-Signature` Slack would send for this body and timestamp (`v0=` + hex). */
export function signSlackRequest(
  rawBody: Buffer | string,
  signingSecret: string,
  timestamp: string,
) {
  const hmac = createHmac('sha256', signingSecret);
  hmac.update(`v0:${timestamp}:`, 'utf8');
  hmac.update(rawBody);
  return `v0=${hmac.digest('hex')}`;
}
