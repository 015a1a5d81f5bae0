import type { CommonQueryMethods } from 'slonik';
import { readActive } from '../../db/contractRevisions.ts';
import { bodyHash } from '../contracts/canonicalJson.ts';
import type { ContractKind } from '../contracts/common.ts';
import { CONTRACT_SCHEMAS } from '../contracts/tenantFile.ts';
import { formatIssues } from '../contracts/formatIssues.ts';
import { IntegrityError } from '../errors.ts';

/**
 * The runtime's read of a contract: the active revision only (never a draft), its body
 * re-hashed against `body_hash` and re-validated against the kind's schema, so a stored body
 * that was altered or no longer fits the code is refused rather than used.
 */
export async function readActiveContract(
  db: CommonQueryMethods,
  key: { projectId: string; kind: ContractKind; name: string },
) {
  const active = await readActive(db, key);
  if (!active) return null;
  const actual = bodyHash(active.body);
  if (actual !== active.bodyHash) {
    throw new IntegrityError(
      'CONTRACT_HASH_MISMATCH',
      `active ${key.kind}/${key.name} does not match its body_hash`,
      {
        detail: { revision_id: active.revisionId },
      },
    );
  }
  const parsed = CONTRACT_SCHEMAS[key.kind].safeParse(active.body);
  if (!parsed.success) {
    throw new IntegrityError(
      'CONTRACT_BODY_INVALID',
      `active ${key.kind}/${key.name} fails its schema`,
      {
        detail: { revision_id: active.revisionId, issues: formatIssues(parsed.error) },
      },
    );
  }
  return { ...active, body: parsed.data };
}
