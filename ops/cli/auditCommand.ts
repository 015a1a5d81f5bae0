import { checkpointAudit, verifyAudit, type AuditVerification } from '../../db/auditEvents.ts';
import { listProjects } from '../../db/projects.ts';
import { withPlatform } from '../../db/withPlatform.ts';
import { withProject } from '../../db/withProject.ts';
import type { CliContext } from './CliContext.ts';
import { parseCommandArgs, parsePositiveInt, requireProject } from './parseCommandArgs.ts';
import { UsageError } from './UsageError.ts';

const USAGE = `usage:
  awooop audit verify [--project P] [--json]          recompute every hash, link and checkpoint; exit 1 on tampering
  awooop audit checkpoint [--project P] [--settle S]  fold settled rows (older than S seconds, default 300) into a checkpoint`;

/** `awooop audit verify|checkpoint` */
export async function auditCommand(ctx: CliContext, [sub, ...args]: string[]): Promise<number> {
  const { values } = parseCommandArgs(args, {
    project: { type: 'string', short: 'p' },
    settle: { type: 'string' },
    json: { type: 'boolean' },
  });
  const { pool } = await ctx.connect();
  switch (sub) {
    case 'verify': {
      const scope = values.project ? `project ${requireProject(values.project)}` : 'all projects';
      const result: AuditVerification = values.project
        ? await withProject(pool, values.project, (tx) => verifyAudit(tx))
        : await withPlatform(
            pool,
            { actor: ctx.actor, reason: 'audit verify (all projects)' },
            (tx) => verifyAudit(tx),
          );
      if (values.json) {
        ctx.print(JSON.stringify({ scope, ok: result.problems.length === 0, ...result }, null, 2));
      } else {
        ctx.print(
          `audit verify (${scope}): ${result.events} events in ${result.chains} chains, ${result.checkpoints} checkpoints`,
        );
        for (const p of result.problems) {
          ctx.print(
            `  TAMPERED ${p.projectId} ${p.chain ?? '(checkpoints)'}${p.seq === null ? '' : ` seq ${p.seq}`}: ${p.message}`,
          );
        }
        ctx.print(
          result.problems.length === 0
            ? 'ok: no tampering found'
            : `FAILED: ${result.problems.length} problem(s)`,
        );
      }
      return result.problems.length === 0 ? 0 : 1;
    }
    case 'checkpoint': {
      const settleSeconds =
        values.settle === '0' ? 0 : (parsePositiveInt('settle', values.settle) ?? 300);
      const projects = values.project
        ? [requireProject(values.project)]
        : (
            await withPlatform(
              pool,
              { actor: ctx.actor, reason: 'audit checkpoint (all projects)' },
              listProjects,
            )
          ).map((p) => p.projectId);
      for (const projectId of projects) {
        const cp = await withProject(pool, projectId, (tx) =>
          checkpointAudit(tx, projectId, { settleSeconds }),
        );
        ctx.print(
          cp
            ? `${projectId}: checkpoint ${cp.seq} covers ${cp.eventCount} new events (${cp.checkpointHash.slice(0, 16)})`
            : `${projectId}: no settled events since the last checkpoint`,
        );
      }
      return 0;
    }
    default:
      throw new UsageError(sub ? `audit: unknown subcommand "${sub}"\n${USAGE}` : USAGE);
  }
}
