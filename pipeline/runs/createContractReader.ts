import type { CommonQueryMethods } from 'slonik';
import { readArtifact } from '../../db/artifacts.ts';
import {
  getPublishedRevision,
  readActivePointers,
  readActiveRevisionId,
} from '../../db/contractRevisions.ts';
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

/** Finds a contract in an {@link ContractReader.activeSnapshot}: null if it has no active revision. */
export type ActiveLookup = <K extends ContractKind>(
  kind: K,
  name: string,
) => Promise<LoadedContract<K> | null>;

/** Reads contracts for the pipeline: active ones for resolve, pinned revisions afterwards. */
export type ContractReader = {
  /** The active revision of a contract (re-hashed and re-validated when first read), or null. */
  active<K extends ContractKind>(
    db: CommonQueryMethods,
    key: { projectId: string; kind: K; name: string },
  ): Promise<LoadedContract<K> | null>;
  /**
   * The active pointers of every contract of `kinds` and of the `named` ones, read in one
   * query; the returned lookup serves their bodies as {@link ContractReader.active} would.
   */
  activeSnapshot(
    db: CommonQueryMethods,
    query: {
      projectId: string;
      kinds: readonly ContractKind[];
      named: readonly { kind: ContractKind; name: string }[];
    },
  ): Promise<ActiveLookup>;
  /** A revision a run pinned; cached, since a published revision never changes. */
  pinned<K extends ContractKind>(
    db: CommonQueryMethods,
    key: { projectId: string; kind: K; revisionId: string },
  ): Promise<LoadedContract<K>>;
  /**
   * An artifact's text (a prompt, an output schema), checked against its SHA-256 when first
   * read and then served from the cache: content-addressed bytes never change.
   */
  artifactText(
    db: CommonQueryMethods,
    key: { projectId: string; ref: string; sha256: string },
  ): Promise<string>;
};

/**
 * A reader with an in-process cache of published revisions and artifacts (each bounded in
 * entries, artifacts also in characters; oldest evicted first).
 */
export function createContractReader({
  maxCached = 2000,
  maxArtifactChars = 32 * 1024 * 1024,
}: { maxCached?: number; maxArtifactChars?: number } = {}): ContractReader {
  const cache = new Map<string, { projectId: string; kind: ContractKind; body: unknown }>();
  // Artifacts are bounded by size too: a prompt can be large.
  const artifacts = new Map<string, string>();
  let artifactChars = 0;
  const reader: ContractReader = {
    // The pointer is read every time (an activation shows at once); the body behind it is an
    // immutable published revision, checked once and then served from the cache.
    async active(db, key) {
      const revisionId = await readActiveRevisionId(db, key);
      if (!revisionId) return null;
      return reader.pinned(db, { projectId: key.projectId, kind: key.kind, revisionId });
    },
    async activeSnapshot(db, query) {
      const pointers = await readActivePointers(db, query);
      return async (kind, name) => {
        const revisionId = pointers.get(`${kind}/${name}`);
        if (!revisionId) return null;
        return reader.pinned(db, { projectId: query.projectId, kind, revisionId });
      };
    },
    async artifactText(db, key) {
      const id = JSON.stringify([key.projectId, key.ref, key.sha256]);
      const hit = artifacts.get(id);
      if (hit !== undefined) return hit;
      const text = (await readArtifact(db, key)).toString('utf8');
      if (text.length > maxArtifactChars) return text;
      while (
        artifacts.size > 0 &&
        (artifacts.size >= maxCached || artifactChars + text.length > maxArtifactChars)
      ) {
        const [oldest, value] = artifacts.entries().next().value!;
        artifacts.delete(oldest);
        artifactChars -= value.length;
      }
      artifacts.set(id, text);
      artifactChars += text.length;
      return text;
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
