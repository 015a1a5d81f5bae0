import type { CommonQueryMethods } from 'slonik';
import { getPublishedRevision, readActiveRevisionId } from '../../db/contractRevisions.ts';
import { bodyHash } from '../contracts/canonicalJson.ts';
import type { ContractKind } from '../contracts/common.ts';
import { formatIssues } from '../contracts/formatIssues.ts';
import { CONTRACT_SCHEMAS, type ContractBodies } from '../contracts/tenantFile.ts';
import { IntegrityError, NotFoundError } from '../errors.ts';

/** A contract body the runtime may use, with the revision it came from. */
export type LoadedContract<K extends ContractKind> = {
  revisionId: string;
  body: ContractBodies[K];
};

/** Reads contracts for the pipeline: active ones for resolve, pinned revisions afterwards. */
export type ContractReader = {
  /** The active revision of a contract (re-hashed and re-validated when first read), or null. */
  active<K extends ContractKind>(
    db: CommonQueryMethods,
    key: { projectId: string; kind: K; name: string },
  ): Promise<LoadedContract<K> | null>;
  /** A revision a run pinned; cached, since a published revision never changes. */
  pinned<K extends ContractKind>(
    db: CommonQueryMethods,
    key: { projectId: string; kind: K; revisionId: string },
  ): Promise<LoadedContract<K>>;
};

/** A reader with an in-process cache of published revisions (bounded, oldest evicted first). */
export function createContractReader({
  maxCached = 2000,
}: { maxCached?: number } = {}): ContractReader {
  const cache = new Map<string, { projectId: string; kind: ContractKind; body: unknown }>();
  const reader: ContractReader = {
    // The pointer is read every time (an activation shows at once); the body behind it is an
    // immutable published revision, checked once and then served from the cache.
    async active(db, key) {
      const revisionId = await readActiveRevisionId(db, key);
      if (!revisionId) return null;
      return reader.pinned(db, { projectId: key.projectId, kind: key.kind, revisionId });
    },
    async pinned(db, { projectId, kind, revisionId }) {
      const hit = cache.get(revisionId);
      if (hit && hit.projectId === projectId && hit.kind === kind) {
        return { revisionId, body: hit.body as never };
      }
      const revision = await getPublishedRevision(db, { projectId, revisionId });
      if (!revision || revision.kind !== kind) {
        throw new NotFoundError(
          'REVISION_NOT_FOUND',
          `pinned ${kind} revision ${revisionId} not found`,
        );
      }
      if (bodyHash(revision.body) !== revision.bodyHash) {
        throw new IntegrityError(
          'CONTRACT_HASH_MISMATCH',
          `${kind}/${revision.name} v${revision.version} does not match its body_hash`,
        );
      }
      const parsed = CONTRACT_SCHEMAS[kind].safeParse(revision.body);
      if (!parsed.success) {
        throw new IntegrityError(
          'CONTRACT_BODY_INVALID',
          `${kind}/${revision.name} v${revision.version} fails its schema`,
          {
            detail: { issues: formatIssues(parsed.error) },
          },
        );
      }
      if (cache.size >= maxCached) cache.delete(cache.keys().next().value!);
      cache.set(revisionId, { projectId, kind, body: parsed.data });
      return { revisionId, body: parsed.data as never };
    },
  };
  return reader;
}
