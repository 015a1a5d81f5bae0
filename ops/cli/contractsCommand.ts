import { sql } from 'slonik';
import { z } from 'zod';
import {
  activateRevision,
  getRevision,
  listActive,
  listRevisions,
  readActive,
  rollbackContract,
} from '../../db/contractRevisions.ts';
import { withPlatform } from '../../db/withPlatform.ts';
import { withProject } from '../../db/withProject.ts';
import { CONTRACT_KINDS, type ContractKind } from '../../pipeline/contracts/common.ts';
import { diffBodies, formatDiff } from '../../pipeline/control/diffBodies.ts';
import { NotFoundError } from '../../pipeline/errors.ts';
import type { CliContext } from './CliContext.ts';
import { formatFlowChange } from './formatFlowChange.ts';
import {
  parseCommandArgs,
  parseContractRef,
  parsePositiveInt,
  requireProject,
} from './parseCommandArgs.ts';
import { UsageError } from './UsageError.ts';

const USAGE = `usage:
  awooop contracts list [--project P] [--kind K] [KIND/NAME]   active contracts, or one contract's revisions
  awooop contracts show KIND/NAME --project P [--version N]    a revision's body (default: the active one)
  awooop contracts diff KIND/NAME --project P [FROM] [TO]      changes between versions (default: previous → active)
  awooop contracts activate KIND/NAME --project P --version N  point the contract at a published version
  awooop contracts rollback KIND/NAME --project P [--to N]     back to version N, or the newest one before the active`;

const iso = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');

/** `awooop contracts list|show|diff|activate|rollback` */
export async function contractsCommand(ctx: CliContext, [sub, ...args]: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs(args, {
    project: { type: 'string', short: 'p' },
    kind: { type: 'string' },
    version: { type: 'string' },
    to: { type: 'string' },
    json: { type: 'boolean' },
  });
  const json = values.json ?? false;
  switch (sub) {
    case 'list': {
      const kind = values.kind === undefined ? undefined : parseKind(values.kind);
      if (positionals[0]) {
        const ref = parseContractRef(positionals[0]);
        const projectId = requireProject(values.project);
        const { pool } = await ctx.connect();
        const [revisions, active] = await withProject(
          pool,
          projectId,
          async (tx) =>
            [
              await listRevisions(tx, { projectId, ...ref }),
              await readActive(tx, { projectId, ...ref }),
            ] as const,
        );
        if (json)
          return print(
            ctx,
            revisions.map((r) => ({
              ...r,
              body: undefined,
              active: r.revisionId === active?.revisionId,
            })),
          );
        if (revisions.length === 0)
          throw new NotFoundError(
            'CONTRACT_NOT_FOUND',
            `${projectId}: no contract ${positionals[0]}`,
          );
        ctx.print('VERSION  STATUS     ACTIVE  BODY_HASH     CREATED               BY');
        for (const r of revisions) {
          ctx.print(
            `${`v${r.version}`.padEnd(8)} ${r.status.padEnd(10)} ${(r.revisionId === active?.revisionId ? 'yes' : '').padEnd(7)} ${r.bodyHash.slice(0, 12)}  ${iso(r.createdAt)}  ${r.createdBy}`,
          );
        }
        return 0;
      }
      const { pool } = await ctx.connect();
      const rows = values.project
        ? await withProject(pool, requireProject(values.project), (tx) =>
            listActive(tx, kind ? { kind } : {}),
          )
        : await withPlatform(
            pool,
            { actor: ctx.actor, reason: 'contracts list (all projects)' },
            (tx) => listActive(tx, kind ? { kind } : {}),
          );
      if (json) return print(ctx, rows);
      ctx.print(
        'PROJECT          CONTRACT                      ACTIVE  LATEST  BODY_HASH     ACTIVATED             BY',
      );
      for (const r of rows) {
        ctx.print(
          `${r.projectId.padEnd(16)} ${`${r.kind}/${r.name}`.padEnd(29)} ${`v${r.version}`.padEnd(7)} ${`v${r.latestVersion}`.padEnd(7)} ${r.bodyHash.slice(0, 12)}  ${iso(r.activatedAt)}  ${r.activatedBy}`,
        );
      }
      if (rows.length === 0) ctx.print('(no active contracts)');
      return 0;
    }
    case 'show': {
      const ref = parseContractRef(positionals[0]);
      const projectId = requireProject(values.project);
      const version = parsePositiveInt('version', values.version);
      const { pool } = await ctx.connect();
      const revision = await withProject(pool, projectId, async (tx) => {
        if (version !== undefined) return getRevision(tx, { projectId, ...ref, version });
        const active = await readActive(tx, { projectId, ...ref });
        return active ? getRevision(tx, { projectId, ...ref, version: active.version }) : null;
      });
      if (!revision) {
        throw new NotFoundError(
          'CONTRACT_NOT_FOUND',
          `${projectId}: no ${version ? `version ${version} of ` : 'active '}${positionals[0]}`,
        );
      }
      if (json) return print(ctx, revision);
      ctx.print(`# ${projectId} ${ref.kind}/${ref.name} v${revision.version} (${revision.status})`);
      ctx.print(`# revision ${revision.revisionId}  body_hash ${revision.bodyHash}`);
      ctx.print(JSON.stringify(revision.body, null, 2));
      return 0;
    }
    case 'diff': {
      const ref = parseContractRef(positionals[0]);
      const projectId = requireProject(values.project);
      const { pool } = await ctx.connect();
      const [fromRev, toRev] = await withProject(pool, projectId, async (tx) => {
        const active = await readActive(tx, { projectId, ...ref });
        const to = parsePositiveInt('TO', positionals[2]) ?? active?.version;
        const from =
          parsePositiveInt('FROM', positionals[1]) ?? (to === undefined ? undefined : to - 1);
        if (from === undefined || to === undefined)
          throw new NotFoundError(
            'CONTRACT_NOT_FOUND',
            `${projectId}: no active ${positionals[0]}`,
          );
        if (from < 1)
          throw new NotFoundError(
            'REVISION_NOT_FOUND',
            `${projectId}: ${positionals[0]} v${to} is its first version; a diff needs two (apply a changed file, or name FROM and TO)`,
          );
        const read = async (version: number) => {
          const revision = await getRevision(tx, { projectId, ...ref, version });
          if (revision) return revision;
          throw new NotFoundError(
            'REVISION_NOT_FOUND',
            `${projectId}: ${positionals[0]} has no version ${version}`,
          );
        };
        return [await read(from), await read(to)];
      });
      const lines = diffBodies(fromRev.body, toRev.body);
      if (json) return print(ctx, { from: fromRev.version, to: toRev.version, diff: lines });
      ctx.print(`${ref.kind}/${ref.name} v${fromRev.version} → v${toRev.version}`);
      for (const line of formatDiff(lines)) ctx.print(`  ${line}`);
      if (lines.length === 0) ctx.print('  (no differences)');
      return 0;
    }
    case 'activate':
    case 'rollback': {
      const ref = parseContractRef(positionals[0]);
      const projectId = requireProject(values.project);
      const version = parsePositiveInt(
        sub === 'activate' ? 'version' : 'to',
        sub === 'activate' ? values.version : values.to,
      );
      if (sub === 'activate' && version === undefined)
        throw new UsageError('--version: required for activate');
      const { pool } = await ctx.connect();
      const result = await withProject(pool, projectId, async (tx) => {
        if (sub === 'rollback') {
          return rollbackContract(tx, {
            projectId,
            ...ref,
            actor: ctx.actor,
            ...(version ? { toVersion: version } : {}),
          });
        }
        const target = await tx.maybeOneFirst(sql.type(z.object({ id: z.string() }))`
          SELECT revision_id AS id FROM contract_revisions
           WHERE project_id = ${projectId} AND kind = ${ref.kind} AND name = ${ref.name} AND version = ${version!}
             AND status = 'published'`);
        return target
          ? activateRevision(tx, { projectId, ...ref, revisionId: target, actor: ctx.actor })
          : null;
      });
      if (!result) {
        throw new NotFoundError(
          'REVISION_NOT_FOUND',
          version
            ? `${projectId}: ${positionals[0]} has no published version ${version}`
            : `${projectId}: ${positionals[0]} has no published version before the active one (a rollback needs a second version: apply a changed file first)`,
        );
      }
      if (json) return print(ctx, result);
      ctx.print(
        result.changed
          ? `${projectId} ${ref.kind}/${ref.name}: active v${result.previousVersion ?? '-'} → v${result.version} (${sub})`
          : `${projectId} ${ref.kind}/${ref.name}: v${result.version} is already active, nothing changed`,
      );
      for (const f of result.flows) ctx.print(`  ${formatFlowChange(f)}`);
      return 0;
    }
    default:
      throw new UsageError(sub ? `contracts: unknown subcommand "${sub}"\n${USAGE}` : USAGE);
  }
}

function parseKind(value: string): ContractKind {
  if (!CONTRACT_KINDS.includes(value as ContractKind)) {
    throw new UsageError(`--kind: unknown kind "${value}"; kinds are ${CONTRACT_KINDS.join(', ')}`);
  }
  return value as ContractKind;
}

function print(ctx: CliContext, value: unknown): number {
  ctx.print(JSON.stringify(value, null, 2));
  return 0;
}
