import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import type { SealedSecret } from '../contracts/sealedSecret.ts';
import { AppError } from '../errors.ts';

/** The additional data a project's secret is sealed with, binding it to its project and name. */
export function secretAad(projectId: string, name: string): string {
  return `awooop:secret:${projectId}:${name}`;
}

/** A short, non-secret id of a key (first 16 hex of its SHA-256), so a wrong key is named. */
export function keyIdOf(key: Buffer): string {
  return createHash('sha256').update(key).digest('hex').slice(0, 16);
}

/**
 * Encrypts `plaintext` with `key` (32 bytes). `aad` binds the ciphertext to where it is stored
 * (project and name), so a sealed value copied to another project or name fails to open.
 */
export function sealSecret(key: Buffer, plaintext: string, aad: string): SealedSecret {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(Buffer.from(aad));
  const ciphertext = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
  return { ciphertext, iv, authTag: cipher.getAuthTag(), keyId: keyIdOf(key) };
}

/** Decrypts a sealed secret; a wrong key, a moved row or an altered byte is refused. */
export function openSecret(key: Buffer, sealed: SealedSecret, aad: string): string {
  if (sealed.keyId !== keyIdOf(key)) {
    throw new AppError(
      'SECRET_KEY_MISMATCH',
      `secret was sealed with key ${sealed.keyId}, not the configured AWOOOP_SECRET_KEY`,
    );
  }
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, sealed.iv);
    decipher.setAAD(Buffer.from(aad));
    decipher.setAuthTag(sealed.authTag);
    return Buffer.concat([decipher.update(sealed.ciphertext), decipher.final()]).toString('utf8');
  } catch (cause) {
    throw new AppError('SECRET_UNREADABLE', 'secret failed its integrity check', { cause });
  }
}
