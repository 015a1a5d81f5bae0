import { sql, type CommonQueryMethods } from 'slonik';
import { z } from 'zod';
import type { ContractKind } from '../pipeline/contracts/common.ts';
import { syncFlowModes, type FlowChange } from './migrationState.ts';

const Revision = z.object({
  revisionId: z.string(),
  projectId: z.string(),
  kind: z.string(),
  name: z.string(),
  version: z.number(),
  status: z.enum(['draft', 'published']),
  body: z.unknown(),
  bodyHash: z.string(),
  createdBy: z.string(),
  createdAt: z.number(),
  publishedBy: z.string().nullable(),
  publishedAt: z.number().nullable(),
});
/** One stored revision of a contract. */
export type Revision = z.infer<typeof Revision>;

const COLUMNS = sql.fragment`
  revision_id AS "revisionId", project_id AS "projectId", kind, name, version, status, body,
  body_hash AS "bodyHash", created_by AS "createdBy", created_at AS "createdAt",
  published_by AS "publishedBy", published_at AS "publishedAt"`;

/** Identifies one contract of a project: `(kind, name)`. */
export type ContractKey = { projectId: string; kind: ContractKind; name: string };

/**
 * Creates the contract's open draft with the next version, or replaces the body of the open
 * draft if there is one: the partial unique index on open drafts makes a second save land on
 * the same row instead of a second draft.
 */
export async function saveDraft(
  db: CommonQueryMethods,
  key: ContractKey & { body: unknown; bodyHash: string; actor: string },
): Promise<Revision> {
  return db.one(sql.type(Revision)`
    INSERT INTO contract_revisions (project_id, kind, name, version, body, body_hash, created_by)
    VALUES (${key.projectId}, ${key.kind}, ${key.name},
            (SELECT coalesce(max(version), 0) + 1 FROM contract_revisions
              WHERE project_id = ${key.projectId} AND kind = ${key.kind} AND name = ${key.name}),
            ${sql.jsonb(key.body as never)}, ${key.bodyHash}, ${key.actor})
    ON CONFLICT (project_id, kind, name) WHERE status = 'draft'
    DO UPDATE SET body = EXCLUDED.body, body_hash = EXCLUDED.body_hash
    RETURNING ${COLUMNS}`);
}

/**
 * Publishes a draft. A published revision can never change again (database trigger).
 * Publishing twice is harmless: the second UPDATE matches no draft and returns null.
 */
export async function publishRevision(
  db: CommonQueryMethods,
  { projectId, revisionId, actor }: { projectId: string; revisionId: string; actor: string },
): Promise<Revision | null> {
  return db.maybeOne(sql.type(Revision)`
    UPDATE contract_revisions
       SET status = 'published', published_by = ${actor}, published_at = now()
     WHERE project_id = ${projectId} AND revision_id = ${revisionId} AND status = 'draft'
     RETURNING ${COLUMNS}`);
}

const Activation = z.object({
  revisionId: z.string(),
  version: z.number(),
  previousRevisionId: z.string().nullable(),
  previousVersion: z.number().nullable(),
  changed: z.boolean(),
});
/**
 * What an activation or rollback did; `changed` is false when the pointer already pointed
 * there. `flows`: the flow modes it changed (a runtime contract only).
 */
export type Activation = z.infer<typeof Activation> & { flows: FlowChange[] };

/**
 * Points the contract's active pointer at a published revision: one statement that moves the
 * pointer, appends the history row and the audit row. For the runtime contract it also makes
 * the flow modes the revision's ({@link syncFlowModes}), so apply, activate and rollback all
 * move the mode with the pointer; the caller's transaction holds both. Activating the
 * revision that is already active moves nothing and writes nothing (so a second run is
 * harmless); its flow modes are still checked, which mends a mode that drifted.
 */
export async function activateRevision(
  db: CommonQueryMethods,
  key: ContractKey & { revisionId: string; actor: string; traceId?: string | null },
  action: 'activate' | 'rollback' = 'activate',
): Promise<Activation | null> {
  const moved = await movePointer(db, key, action);
  if (!moved) return null;
  const flows =
    key.kind === 'runtime'
      ? await syncFlowModes(db, {
          projectId: key.projectId,
          revisionId: moved.revisionId,
          actor: key.actor,
        })
      : [];
  return { ...moved, flows };
}

function movePointer(
  db: CommonQueryMethods,
  key: ContractKey & { revisionId: string; actor: string; traceId?: string | null },
  action: 'activate' | 'rollback',
) {
  return db.maybeOne(sql.type(Activation)`
    WITH target AS (
      SELECT revision_id, version FROM contract_revisions
       WHERE project_id = ${key.projectId} AND kind = ${key.kind} AND name = ${key.name}
         AND revision_id = ${key.revisionId} AND status = 'published'
    ),
    prev AS (
      SELECT a.revision_id, r.version FROM contract_active a
        JOIN contract_revisions r USING (revision_id)
       WHERE a.project_id = ${key.projectId} AND a.kind = ${key.kind} AND a.name = ${key.name}
    ),
    moved AS (
      INSERT INTO contract_active (project_id, kind, name, revision_id, activated_by)
      SELECT ${key.projectId}, ${key.kind}, ${key.name}, revision_id, ${key.actor} FROM target
      ON CONFLICT (project_id, kind, name) DO UPDATE
        SET revision_id = EXCLUDED.revision_id, activated_by = EXCLUDED.activated_by,
            activated_at = now()
        WHERE contract_active.revision_id IS DISTINCT FROM EXCLUDED.revision_id
      RETURNING revision_id
    ),
    history AS (
      INSERT INTO contract_activations (project_id, kind, name, revision_id, previous_revision_id,
                                        action, actor, trace_id)
      SELECT ${key.projectId}, ${key.kind}, ${key.name}, moved.revision_id,
             (SELECT revision_id FROM prev), ${action}, ${key.actor}, ${key.traceId ?? null}
        FROM moved
    ),
    audit AS (
      INSERT INTO audit_events (project_id, chain, actor, action, subject, detail, trace_id)
      SELECT ${key.projectId}, ${`contract:${key.kind}:${key.name}`}, ${key.actor},
             ${`contract.${action}`}, ${`${key.kind}/${key.name}`},
             jsonb_build_object('revision_id', moved.revision_id, 'version', (SELECT version FROM target),
                                'previous_revision_id', (SELECT revision_id FROM prev),
                                'previous_version', (SELECT version FROM prev)),
             ${key.traceId ?? null}
        FROM moved
    )
    SELECT target.revision_id AS "revisionId", target.version,
           (SELECT revision_id FROM prev) AS "previousRevisionId",
           (SELECT version FROM prev) AS "previousVersion",
           EXISTS (SELECT 1 FROM moved) AS changed
      FROM target`);
}

/**
 * Rolls the active pointer back in one statement: to the published revision `toVersion`, or
 * by default to the newest published revision older than the active one. Returns null when
 * there is nothing to roll back to.
 */
export async function rollbackContract(
  db: CommonQueryMethods,
  key: ContractKey & { toVersion?: number; actor: string; traceId?: string | null },
): Promise<Activation | null> {
  const target = await db.maybeOneFirst(sql.type(z.object({ revisionId: z.string() }))`
    SELECT r.revision_id AS "revisionId" FROM contract_revisions r
     WHERE r.project_id = ${key.projectId} AND r.kind = ${key.kind} AND r.name = ${key.name}
       AND r.status = 'published'
       AND CASE WHEN ${key.toVersion ?? null}::int IS NOT NULL THEN r.version = ${key.toVersion ?? null}
           ELSE r.version < (SELECT ar.version FROM contract_active a JOIN contract_revisions ar USING (revision_id)
                              WHERE a.project_id = ${key.projectId} AND a.kind = ${key.kind} AND a.name = ${key.name})
           END
     ORDER BY r.version DESC LIMIT 1`);
  if (!target) return null;
  return activateRevision(db, { ...key, revisionId: target }, 'rollback');
}

const Active = z.object({
  revisionId: z.string(),
  version: z.number(),
  body: z.unknown(),
  bodyHash: z.string(),
  activatedAt: z.number(),
});
/** The revision the runtime uses for one contract. */
export type ActiveRevision = z.infer<typeof Active>;

/**
 * The only read the runtime uses: the active revision of one contract. It joins through the
 * active pointer, whose foreign key admits only published revisions, so a draft is never seen.
 */
export async function readActive(
  db: CommonQueryMethods,
  key: ContractKey,
): Promise<ActiveRevision | null> {
  return db.maybeOne(sql.type(Active)`
    SELECT r.revision_id AS "revisionId", r.version, r.body, r.body_hash AS "bodyHash",
           a.activated_at AS "activatedAt"
      FROM contract_active a
      JOIN contract_revisions r ON r.revision_id = a.revision_id AND r.status = 'published'
     WHERE a.project_id = ${key.projectId} AND a.kind = ${key.kind} AND a.name = ${key.name}`);
}

const ActiveRevisionId = z.object({ revisionId: z.string() });

/** Only the revision id the active pointer names (published, by the pointer's foreign key), or null. */
export async function readActiveRevisionId(
  db: CommonQueryMethods,
  key: ContractKey,
): Promise<string | null> {
  const row = await db.maybeOne(sql.type(ActiveRevisionId)`
    SELECT revision_id AS "revisionId" FROM contract_active
     WHERE project_id = ${key.projectId} AND kind = ${key.kind} AND name = ${key.name}`);
  return row?.revisionId ?? null;
}

const ActivePointer = z.object({ kind: z.string(), name: z.string(), revisionId: z.string() });

/**
 * The active pointers of a project, in one query: every pointer of the given kinds, plus the
 * named ones of other kinds. Keyed `kind/name`.
 */
export async function readActivePointers(
  db: CommonQueryMethods,
  {
    projectId,
    kinds,
    named,
  }: {
    projectId: string;
    kinds: readonly ContractKind[];
    named: readonly { kind: ContractKind; name: string }[];
  },
): Promise<Map<string, string>> {
  const namedKinds = sql.array(
    named.map((n) => n.kind),
    'text',
  );
  const namedNames = sql.array(
    named.map((n) => n.name),
    'text',
  );
  const rows = await db.any(sql.type(ActivePointer)`
    SELECT kind, name, revision_id AS "revisionId" FROM contract_active
     WHERE project_id = ${projectId}
       AND (kind = ANY(${sql.array([...kinds], 'text')})
            OR (kind, name) IN (SELECT * FROM unnest(${namedKinds}, ${namedNames})))`);
  return new Map(rows.map((r) => [`${r.kind}/${r.name}`, r.revisionId]));
}

const ActiveSummary = z.object({
  projectId: z.string(),
  kind: z.string(),
  name: z.string(),
  revisionId: z.string(),
  version: z.number(),
  bodyHash: z.string(),
  activatedAt: z.number(),
  activatedBy: z.string(),
  latestVersion: z.number(),
});
export type ActiveSummary = z.infer<typeof ActiveSummary>;

/** Every active contract visible to this transaction, with the newest version that exists. */
export async function listActive(
  db: CommonQueryMethods,
  { kind }: { kind?: ContractKind } = {},
): Promise<readonly ActiveSummary[]> {
  return db.any(sql.type(ActiveSummary)`
    SELECT a.project_id AS "projectId", a.kind, a.name, a.revision_id AS "revisionId", r.version,
           r.body_hash AS "bodyHash", a.activated_at AS "activatedAt", a.activated_by AS "activatedBy",
           (SELECT max(version) FROM contract_revisions x
             WHERE x.project_id = a.project_id AND x.kind = a.kind AND x.name = a.name) AS "latestVersion"
      FROM contract_active a JOIN contract_revisions r USING (revision_id)
     WHERE (${kind ?? null}::text IS NULL OR a.kind = ${kind ?? null})
     ORDER BY a.project_id, a.kind, a.name`);
}

/** All revisions of one contract, newest first (drafts included: this is the operator's view). */
export async function listRevisions(
  db: CommonQueryMethods,
  key: ContractKey,
): Promise<readonly Revision[]> {
  return db.any(sql.type(Revision)`
    SELECT ${COLUMNS} FROM contract_revisions
     WHERE project_id = ${key.projectId} AND kind = ${key.kind} AND name = ${key.name}
     ORDER BY version DESC`);
}

/** One revision of a contract by version number. */
export async function getRevision(
  db: CommonQueryMethods,
  key: ContractKey & { version: number },
): Promise<Revision | null> {
  return db.maybeOne(sql.type(Revision)`
    SELECT ${COLUMNS} FROM contract_revisions
     WHERE project_id = ${key.projectId} AND kind = ${key.kind} AND name = ${key.name}
       AND version = ${key.version}`);
}

/** The newest published revision of a contract whose body hashes to `bodyHash`, if any. */
export async function findPublishedByHash(
  db: CommonQueryMethods,
  key: ContractKey & { bodyHash: string },
): Promise<Revision | null> {
  return db.maybeOne(sql.type(Revision)`
    SELECT ${COLUMNS} FROM contract_revisions
     WHERE project_id = ${key.projectId} AND kind = ${key.kind} AND name = ${key.name}
       AND body_hash = ${key.bodyHash} AND status = 'published'
     ORDER BY version DESC LIMIT 1`);
}

/** A published revision by id (what a run pinned), or null. */
export async function getPublishedRevision(
  db: CommonQueryMethods,
  { projectId, revisionId }: { projectId: string; revisionId: string },
): Promise<Revision | null> {
  return db.maybeOne(sql.type(Revision)`
    SELECT ${COLUMNS} FROM contract_revisions
     WHERE project_id = ${projectId} AND revision_id = ${revisionId} AND status = 'published'`);
}
