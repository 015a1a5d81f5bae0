import { sql } from 'slonik';
import type { ArtifactKind } from '../../db/artifacts.ts';
import { putArtifact } from '../../db/artifacts.ts';
import { appendAudit } from '../../db/auditEvents.ts';
import {
  activateRevision,
  findPublishedByHash,
  listActive,
  publishRevision,
  readActive,
  saveDraft,
} from '../../db/contractRevisions.ts';
import { syncFlowModes, type FlowChange } from '../../db/migrationState.ts';
import { upsertProject } from '../../db/projects.ts';
import { withProject } from '../../db/withProject.ts';
import { bodyHash } from '../contracts/canonicalJson.ts';
import type { ContractKind } from '../contracts/common.ts';
import { tenantRevisions, type TenantFile } from '../contracts/tenantFile.ts';
import type { Context } from '../context.ts';
import type { AuditAction } from '../contracts/auditActions.ts';
import { ContractViolationError } from '../errors.ts';
import { envRefIssues } from '../secrets/envRefIssues.ts';
import { diffBodies, type DiffLine } from './diffBodies.ts';

/** An artifact's bytes, read and hash-checked by the caller. */
export type ArtifactInput = { ref: string; kind: ArtifactKind; mediaType: string; content: Buffer };

/** What happened to one contract. */
export type ContractOutcome = {
  kind: ContractKind;
  name: string;
  /** created: first revision; updated: new revision; reactivated: an earlier revision with the same body. */
  status: 'created' | 'updated' | 'reactivated' | 'unchanged';
  version: number;
  revisionId: string;
  previousVersion: number | null;
  diff: DiffLine[];
};

/** The result of one apply. */
export type ApplyReport = {
  projectId: string;
  projectCreated: boolean;
  dryRun: boolean;
  contracts: ContractOutcome[];
  artifactsStored: number;
  /** Flow modes this apply changed (they follow the active runtime revision). */
  flows: FlowChange[];
  /** Active contracts the file no longer mentions; left active (apply never deletes). */
  notInFile: { kind: string; name: string }[];
  changed: boolean;
};

class DryRunRollback extends Error {
  readonly report: ApplyReport;
  constructor(report: ApplyReport) {
    super('dry run');
    this.report = report;
  }
}

/**
 * Writes a validated tenant file as contract revisions: per contract, a body equal to the
 * active one is left alone; a body equal to an earlier published revision re-activates that
 * revision; any other body becomes a new draft that is published and activated. Everything
 * happens in one transaction for the project, serialized per project by an advisory lock, so
 * an apply is all or nothing and two applies of one project cannot interleave.
 *
 * An `env:` ref naming a variable outside `envSecrets` is refused before anything is opened.
 *
 * Idempotent by content: a second apply of the same file finds every body hash already active
 * and writes nothing at all.
 */
export async function applyTenant(
  ctx: Context,
  input: {
    tenant: TenantFile;
    artifacts: readonly ArtifactInput[];
    actor: string;
    dryRun?: boolean;
    traceId?: string;
    /** The env variables `env:` refs may name (`AWOOOP_ENV_SECRETS`); others are refused. */
    envSecrets?: readonly string[];
  },
): Promise<ApplyReport> {
  const { tenant, actor } = input;
  const projectId = tenant.project.id;
  const traceId = input.traceId ?? null;
  const envIssues = envRefIssues(tenant, input.envSecrets ?? []);
  if (envIssues.length > 0) throw new ContractViolationError(envIssues);
  try {
    return await withProject(ctx.pool, projectId, async (tx) => {
      const audit = (
        chain: string,
        action: AuditAction,
        subject: string,
        detail: Record<string, unknown>,
      ) => appendAudit(tx, { projectId, chain, actor, action, subject, detail, traceId });
      await tx.query(
        sql.unsafe`SELECT pg_advisory_xact_lock(hashtext(${`awooop:apply:${projectId}`}))`,
      );
      const project = await upsertProject(tx, {
        projectId,
        displayName: tenant.project.displayName,
        actor,
      });
      if (project.changed) {
        await audit('project', project.created ? 'project.create' : 'project.update', projectId, {
          display_name: tenant.project.displayName,
        });
      }

      let artifactsStored = 0;
      for (const artifact of input.artifacts) {
        const stored = await putArtifact(tx, { projectId, actor, ...artifact });
        if (stored.created) {
          artifactsStored += 1;
          await audit(`artifact:${artifact.ref}`, 'artifact.store', artifact.ref, {
            sha256: stored.sha256,
            kind: artifact.kind,
            bytes: artifact.content.length,
          });
        }
      }

      const contracts: ContractOutcome[] = [];
      let flows: FlowChange[] = [];
      for (const { kind, name, body } of tenantRevisions(tenant)) {
        const key = { projectId, kind, name };
        const hash = bodyHash(body);
        const active = await readActive(tx, key);
        if (active?.bodyHash === hash) {
          // The pointer stays; the flow modes are checked all the same, so an apply mends a
          // mode that drifted from the active runtime revision.
          if (kind === 'runtime')
            flows = await syncFlowModes(tx, { projectId, revisionId: active.revisionId, actor });
          contracts.push({
            kind,
            name,
            status: 'unchanged',
            version: active.version,
            revisionId: active.revisionId,
            previousVersion: active.version,
            diff: [],
          });
          continue;
        }
        const diff = diffBodies(active?.body, body);
        const earlier = await findPublishedByHash(tx, { ...key, bodyHash: hash });
        let revision = earlier;
        if (!revision) {
          const draft = await saveDraft(tx, { ...key, body, bodyHash: hash, actor });
          await audit(`contract:${kind}:${name}`, 'contract.draft', `${kind}/${name}`, {
            revision_id: draft.revisionId,
            version: draft.version,
            body_hash: hash,
          });
          revision = await publishRevision(tx, { projectId, revisionId: draft.revisionId, actor });
          if (!revision) throw new Error(`draft ${draft.revisionId} vanished before publish`);
          await audit(`contract:${kind}:${name}`, 'contract.publish', `${kind}/${name}`, {
            revision_id: revision.revisionId,
            version: revision.version,
            body_hash: hash,
          });
        }
        const activation = await activateRevision(tx, {
          ...key,
          revisionId: revision.revisionId,
          actor,
          traceId,
        });
        if (kind === 'runtime') flows = activation?.flows ?? [];
        contracts.push({
          kind,
          name,
          status: earlier ? 'reactivated' : active ? 'updated' : 'created',
          version: revision.version,
          revisionId: revision.revisionId,
          previousVersion: active?.version ?? null,
          diff,
        });
      }

      const inFile = new Set(contracts.map((c) => `${c.kind}/${c.name}`));
      const notInFile = (await listActive(tx))
        .filter((a) => !inFile.has(`${a.kind}/${a.name}`))
        .map((a) => ({ kind: a.kind, name: a.name }));

      const changed =
        project.changed ||
        artifactsStored > 0 ||
        flows.length > 0 ||
        contracts.some((c) => c.status !== 'unchanged');
      const report: ApplyReport = {
        projectId,
        projectCreated: project.created,
        dryRun: input.dryRun ?? false,
        contracts,
        artifactsStored,
        flows,
        notInFile,
        changed,
      };
      if (changed) {
        await audit('apply', 'tenant.apply', projectId, {
          contracts: contracts
            .filter((c) => c.status !== 'unchanged')
            .map((c) => ({ kind: c.kind, name: c.name, status: c.status, version: c.version })),
          artifacts_stored: artifactsStored,
          flows,
        });
      }
      if (input.dryRun) throw new DryRunRollback(report);
      return report;
    });
  } catch (error) {
    if (error instanceof DryRunRollback) return error.report;
    throw error;
  }
}
