import { BUILTIN_CHANNEL_PLUGINS } from '../../pipeline/channels/builtinChannelPlugins.ts';
import { createChannelRegistry } from '../../pipeline/channels/registry.ts';
import type { ApplyReport } from '../../pipeline/control/applyTenant.ts';
import { applyTenant } from '../../pipeline/control/applyTenant.ts';
import { formatDiff } from '../../pipeline/control/diffBodies.ts';
import type { CliContext } from './CliContext.ts';
import { formatFlowChange } from './formatFlowChange.ts';
import { loadTenantFile } from './loadTenantFile.ts';
import { parseCommandArgs } from './parseCommandArgs.ts';
import { UsageError } from './UsageError.ts';

/** `awooop apply -f tenant.yaml [--dry-run] [--json]` */
export async function applyCommand(ctx: CliContext, args: string[]): Promise<number> {
  const { values } = parseCommandArgs(args, {
    file: { type: 'string', short: 'f' },
    'dry-run': { type: 'boolean' },
    json: { type: 'boolean' },
  });
  if (!values.file) throw new UsageError('-f/--file: required: the tenant YAML file to apply');
  // everything is validated before the database is even opened
  // A channel type is accepted only when a plugin is registered for it.
  const channelTypes = createChannelRegistry(BUILTIN_CHANNEL_PLUGINS).types();
  const { tenant, artifacts } = await loadTenantFile(values.file, channelTypes);
  const report = await applyTenant(await ctx.connect(), {
    tenant,
    artifacts,
    actor: ctx.actor,
    dryRun: values['dry-run'] ?? false,
    envSecrets: ctx.config.AWOOOP_ENV_SECRETS,
  });
  if (values.json) ctx.print(JSON.stringify(report, null, 2));
  else printReport(ctx, values.file, report);
  return 0;
}

function printReport(ctx: CliContext, file: string, report: ApplyReport): void {
  const prefix = report.dryRun ? 'dry run: ' : '';
  if (!report.changed) {
    ctx.print(
      `${prefix}${report.projectId}: nothing to apply, ${report.contracts.length} contracts unchanged (${file})`,
    );
    return;
  }
  ctx.print(
    `${prefix}applied ${file} to project ${report.projectId}${report.projectCreated ? ' (new project)' : ''}`,
  );
  for (const c of report.contracts) {
    const ref = `${c.kind}/${c.name}`;
    if (c.status === 'unchanged') {
      ctx.print(`  = ${ref} v${c.version} unchanged`);
      continue;
    }
    const from = c.previousVersion === null ? '' : ` (was v${c.previousVersion})`;
    ctx.print(
      `  ${c.status === 'created' ? '+' : '~'} ${ref} v${c.version} ${c.status}${from}  revision ${c.revisionId}`,
    );
    if (c.status !== 'created') for (const line of formatDiff(c.diff)) ctx.print(`      ${line}`);
  }
  for (const f of report.flows) ctx.print(`  ${formatFlowChange(f)}`);
  if (report.artifactsStored > 0) ctx.print(`  ${report.artifactsStored} artifact(s) stored`);
  for (const n of report.notInFile)
    ctx.print(`  ! ${n.kind}/${n.name} is active but not in the file: left as is`);
  const counts = ['created', 'updated', 'reactivated', 'unchanged']
    .map((s) => [s, report.contracts.filter((c) => c.status === s).length] as const)
    .filter(([, n]) => n > 0)
    .map(([s, n]) => `${n} ${s}`);
  ctx.print(`${report.contracts.length} contracts: ${counts.join(', ')}`);
}
