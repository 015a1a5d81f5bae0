import { sql, type CommonQueryMethods } from 'slonik';
import { z } from 'zod';
import { sha256Hex } from '../pipeline/contracts/canonicalJson.ts';
import { IntegrityError, NotFoundError } from '../pipeline/errors.ts';

// Row schemas built once at load: zod compiles a schema on first use, so one built per
// call was paid on every query.
const Sha256Row = z.object({ sha256: z.string() });
const ContentRow = z.object({ content: z.instanceof(Buffer) });

/** The kinds of content-addressed artifact a contract may reference. */
export type ArtifactKind = 'prompt' | 'json_schema' | 'eval' | 'replay';

/**
 * Stores an artifact's bytes under (ref, sha256). The hash is computed here, never trusted
 * from the caller. Storing the same bytes again is a no-op (primary key, DO NOTHING), so a
 * second apply is harmless. Returns whether a row was written.
 */
export async function putArtifact(
  db: CommonQueryMethods,
  a: {
    projectId: string;
    ref: string;
    kind: ArtifactKind;
    mediaType: string;
    content: Buffer;
    actor: string;
  },
): Promise<{ sha256: string; created: boolean }> {
  const sha256 = sha256Hex(a.content);
  const created = await db.maybeOne(sql.type(Sha256Row)`
    INSERT INTO artifact_refs (project_id, ref, sha256, kind, media_type, content, created_by)
    VALUES (${a.projectId}, ${a.ref}, ${sha256}, ${a.kind}, ${a.mediaType}, ${sql.binary(a.content)}, ${a.actor})
    ON CONFLICT (project_id, ref, sha256) DO NOTHING
    RETURNING sha256`);
  return { sha256, created: created !== null };
}

/**
 * Reads an artifact and checks its bytes against the recorded SHA-256. Bytes that no longer
 * match are refused with `ARTIFACT_HASH_MISMATCH`: a prompt or schema is used exactly as
 * published or not at all.
 */
export async function readArtifact(
  db: CommonQueryMethods,
  { projectId, ref, sha256 }: { projectId: string; ref: string; sha256: string },
): Promise<Buffer> {
  const row = await db.maybeOne(sql.type(ContentRow)`
    SELECT content FROM artifact_refs
     WHERE project_id = ${projectId} AND ref = ${ref} AND sha256 = ${sha256}`);
  if (!row)
    throw new NotFoundError(
      'ARTIFACT_NOT_FOUND',
      `artifact ${ref}@${sha256.slice(0, 12)} not found`,
    );
  const actual = sha256Hex(row.content);
  if (actual !== sha256) {
    throw new IntegrityError(
      'ARTIFACT_HASH_MISMATCH',
      `artifact ${ref} does not match its SHA-256 (recorded ${sha256.slice(0, 12)}, bytes hash to ${actual.slice(0, 12)})`,
      { detail: { ref, sha256 } },
    );
  }
  return row.content;
}
