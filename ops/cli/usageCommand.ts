import { projectExists } from '../../db/projects.ts';
import { withProject } from '../../db/withProject.ts';
import { reportUsage, UsageQuery } from '../../pipeline/budgets/reportUsage.ts';
import type { CliContext } from './CliContext.ts';
import { parseCommandArgs, requireProject } from './parseCommandArgs.ts';
import { UsageError } from './UsageError.ts';

const USAGE = `usage:
  awooop usage --project P [--by agent|model|day] [--period today|month | --from DAY --to DAY] [--json]
  (spend from settled steps: tokens in and out, USD, tool calls, runs; days are UTC, YYYY-MM-DD;
   default today)`;

/**
 * `awooop usage`: a project's spend, in total or by agent, model or day, for today, this
 * month or a range of days. A bad flag is a usage error naming it. Reads only.
 */
export async function usageCommand(ctx: CliContext, args: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs(args, {
    project: { type: 'string', short: 'p' },
    by: { type: 'string' },
    period: { type: 'string' },
    from: { type: 'string' },
    to: { type: 'string' },
    json: { type: 'boolean' },
  });
  if (positionals.length > 0) throw new UsageError(`unexpected ${positionals[0]}\n\n${USAGE}`);
  const projectId = requireProject(values.project);
  const parsed = UsageQuery.safeParse({
    ...(values.by !== undefined ? { by: values.by } : {}),
    ...(values.period !== undefined ? { period: values.period } : {}),
    ...(values.from !== undefined ? { from: values.from } : {}),
    ...(values.to !== undefined ? { to: values.to } : {}),
  });
  if (!parsed.success) {
    const lines = parsed.error.issues.map(
      (issue) => `--${issue.path.join('.') || 'by'}: ${issue.message}`,
    );
    throw new UsageError(`${lines.join('\n')}\n\n${USAGE}`);
  }
  const context = await ctx.connect();
  const exists = await withProject(context.pool, projectId, (tx) => projectExists(tx, projectId));
  if (!exists) throw new UsageError(`--project: no project "${projectId}"`);
  const report = await reportUsage({ pool: context.pool, now: Date.now }, projectId, parsed.data);
  if (values.json) {
    ctx.print(JSON.stringify(report, null, 2));
    return 0;
  }
  ctx.print(`${report.project}  ${report.from} .. ${report.to}`);
  const line = (key: string, r: Omit<(typeof report.rows)[number], 'key'>) =>
    ctx.print(
      `${key.padEnd(28)}  in ${String(r.inputTokens).padStart(9)}  out ${String(r.outputTokens).padStart(9)}  $${r.usd.toFixed(6).padStart(12)}  tools ${String(r.toolCalls).padStart(5)}  runs ${String(r.runs).padStart(5)}${r.unpricedSteps > 0 ? `  (${r.unpricedSteps} unpriced steps)` : ''}`,
    );
  for (const row of report.rows) line(row.key, row);
  line('total', report.total);
  return 0;
}
