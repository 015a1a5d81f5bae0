import { sql, type CommonQueryMethods } from 'slonik';
import { z } from 'zod';
import { SealedSecret } from '../pipeline/contracts/sealedSecret.ts';

// Row schemas built once at load: zod compiles a schema on first use, so one built per
// call was paid on every query.
const SecretListRow = z.object({ name: z.string(), keyId: z.string(), updatedAt: z.number() });
const NameRow = z.object({ name: z.string() });

/**
 * Stores (or replaces) a project's secret, sealed by the caller (`sealSecret` with
 * `secretAad`): the database never sees the value or the key. Setting the same name again
 * overwrites it, so a repeated `awooop secrets set` leaves one row.
 */
export async function putSecret(
  db: CommonQueryMethods,
  s: { projectId: string; name: string; sealed: SealedSecret; actor: string },
): Promise<void> {
  const { sealed } = s;
  await db.query(sql.unsafe`
    INSERT INTO secrets (project_id, name, ciphertext, iv, auth_tag, key_id, created_by)
    VALUES (${s.projectId}, ${s.name}, ${sql.binary(sealed.ciphertext)}, ${sql.binary(sealed.iv)},
            ${sql.binary(sealed.authTag)}, ${sealed.keyId}, ${s.actor})
    ON CONFLICT (project_id, name) DO UPDATE SET
      ciphertext = EXCLUDED.ciphertext, iv = EXCLUDED.iv, auth_tag = EXCLUDED.auth_tag,
      key_id = EXCLUDED.key_id, updated_at = now()`);
}

/** A project's sealed secret, or null. */
export async function readSealedSecret(
  db: CommonQueryMethods,
  projectId: string,
  name: string,
): Promise<SealedSecret | null> {
  return db.maybeOne(sql.type(SealedSecret)`
    SELECT ciphertext, iv, auth_tag AS "authTag", key_id AS "keyId"
      FROM secrets WHERE project_id = ${projectId} AND name = ${name}`);
}

/** Every sealed secret of a project, by name (for redaction: every known value). */
export async function readAllSealedSecrets(
  db: CommonQueryMethods,
  projectId: string,
): Promise<readonly (SealedSecret & { name: string })[]> {
  return db.any(sql.type(SealedSecret.extend({ name: z.string() }))`
    SELECT name, ciphertext, iv, auth_tag AS "authTag", key_id AS "keyId"
      FROM secrets WHERE project_id = ${projectId} ORDER BY name`);
}

/** Names and dates of a project's secrets; never their values. */
export async function listSecretNames(db: CommonQueryMethods, projectId: string) {
  return db.any(sql.type(SecretListRow)`
    SELECT name, key_id AS "keyId", updated_at AS "updatedAt"
      FROM secrets WHERE project_id = ${projectId} ORDER BY name`);
}

/** Removes a project's secret; returns whether it existed. */
export async function deleteSecret(
  db: CommonQueryMethods,
  projectId: string,
  name: string,
): Promise<boolean> {
  const row = await db.maybeOne(sql.type(NameRow)`
    DELETE FROM secrets WHERE project_id = ${projectId} AND name = ${name} RETURNING name`);
  return row !== null;
}
