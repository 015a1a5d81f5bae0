import { describe, expect, it } from 'vitest';
import { verifyLineSignature } from '../../pipeline/channels/line/verifyLineSignature.ts';
import { verifyTelegramSecret } from '../../pipeline/channels/telegram/verifyTelegramSecret.ts';
import { lineWebhook } from '../../ops/fakes/channelPayloads.ts';

describe('verifyTelegramSecret', () => {
  const expected = 'wh_secret-0123456789_abcdef';

  it('accepts the configured secret', () => {
    expect(verifyTelegramSecret(expected, expected)).toBe(true);
  });

  it('refuses a wrong, missing or empty header', () => {
    expect(verifyTelegramSecret('wh_secret-0123456789_abcdeF', expected)).toBe(false);
    expect(verifyTelegramSecret(undefined, expected)).toBe(false);
    expect(verifyTelegramSecret('', expected)).toBe(false);
  });

  it('refuses a header of a different length without throwing', () => {
    expect(verifyTelegramSecret(expected.slice(0, 5), expected)).toBe(false);
    expect(verifyTelegramSecret(`${expected}x`.repeat(20), expected)).toBe(false);
  });

  it('never matches when no secret is configured', () => {
    expect(verifyTelegramSecret('', '')).toBe(false);
  });
});

describe('verifyLineSignature', () => {
  const secret = 'b8a1d3c9e0f24c6e9a7d5b3f1e2c4a6d';
  const signed = lineWebhook({ events: [{ text: 'hello' }], channelSecret: secret });

  it('accepts the signature LINE computes over the raw body, as a string or bytes', () => {
    expect(verifyLineSignature(signed.body, secret, signed.signature)).toBe(true);
    expect(verifyLineSignature(Buffer.from(signed.body), secret, signed.signature)).toBe(true);
  });

  it('refuses a missing or empty header', () => {
    expect(verifyLineSignature(signed.body, secret, undefined)).toBe(false);
    expect(verifyLineSignature(signed.body, secret, '')).toBe(false);
  });

  it('refuses a signature made with another secret', () => {
    const other = lineWebhook({ events: [{ text: 'hello' }], channelSecret: 'another-secret' });
    expect(verifyLineSignature(other.body, secret, other.signature)).toBe(false);
  });

  it('refuses a tampered body, even one that parses to the same JSON', () => {
    expect(
      verifyLineSignature(signed.body.replace('hello', 'HELLO'), secret, signed.signature),
    ).toBe(false);
    expect(verifyLineSignature(`${signed.body} `, secret, signed.signature)).toBe(false);
  });

  it('refuses a header of another length, with junk after the padding, or not base64', () => {
    expect(verifyLineSignature(signed.body, secret, signed.signature.slice(0, 10))).toBe(false);
    expect(verifyLineSignature(signed.body, secret, `${signed.signature}AAAA`)).toBe(false);
    expect(verifyLineSignature(signed.body, secret, '!!! not base64 !!!')).toBe(false);
  });
});
