import { describe, expect, it } from 'vitest';
import { isStorableText, toStorable } from '../../pipeline/contracts/storableText.ts';

describe('toStorable', () => {
  it('replaces each NUL and unpaired surrogate with one U+FFFD, in keys and nested values', () => {
    expect(
      toStorable({ 'k\u0000': ['\ud800x', { deep: 'y\udc00' }], n: 1, b: true, z: null }),
    ).toEqual({ 'k\ufffd': ['\ufffdx', { deep: 'y\ufffd' }], n: 1, b: true, z: null });
  });

  it('keeps surrogate pairs and other text as they are', () => {
    const text = 'ok 😀 𝄞 \ufffd \u0001 日本語';
    expect(toStorable(text)).toBe(text);
    expect(isStorableText(text)).toBe(true);
    expect(toStorable('😀'.slice(0, 1) + '😀')).toBe('\ufffd😀');
  });
});
