import { z } from 'zod';

/**
 * A secret as stored: AES-256-GCM ciphertext, its 12-byte IV and 16-byte tag, and the key's
 * id. `pipeline/secrets/` seals and opens it; `db/` only stores and reads these bytes.
 */
export const SealedSecret = z.object({
  ciphertext: z.instanceof(Buffer),
  iv: z.instanceof(Buffer),
  authTag: z.instanceof(Buffer),
  keyId: z.string(),
});
export type SealedSecret = z.infer<typeof SealedSecret>;
