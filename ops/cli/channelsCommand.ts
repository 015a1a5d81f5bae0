import { projectExists } from '../../db/projects.ts';
import { withProject } from '../../db/withProject.ts';
import {
  describeChannelAccounts,
  type ChannelAccountView,
} from '../../pipeline/channelManager/describeChannelAccounts.ts';
import { requestAccountState } from '../../pipeline/channelManager/requestAccountState.ts';
import { createContractReader } from '../../pipeline/runs/createContractReader.ts';
import type { CliContext } from './CliContext.ts';
import { connectCliRedis } from './connectCliRedis.ts';
import { parseCommandArgs, requireProject } from './parseCommandArgs.ts';
import { UsageError } from './UsageError.ts';

const USAGE = `usage:
  awooop channels status --project P [--account A] [--json]    every account (or one) with its snapshot
  awooop channels start --project P --account A [--json]       run a stopped account again (its waiting sends resume)
  awooop channels stop --project P --account A [--json]        stop its intake (webhook 503) and its sends (they wait)
  awooop channels restart --project P --account A [--json]     reopen its connection and redo its registration
  (awooop channels, with no subcommand, runs the channels process)`;

/**
 * `awooop channels status|start|stop|restart`: the channel accounts of a project and their
 * snapshots, and an operator's start / stop / restart of one (recorded with the CLI's actor,
 * audited; the channels process acts on it at once).
 */
export async function channelsCommand(ctx: CliContext, [sub, ...args]: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs(args, {
    project: { type: 'string', short: 'p' },
    account: { type: 'string' },
    json: { type: 'boolean' },
  });
  if (sub !== 'status' && sub !== 'start' && sub !== 'stop' && sub !== 'restart')
    throw new UsageError(USAGE);
  if (positionals.length > 0)
    throw new UsageError(`${sub}: unexpected argument ${JSON.stringify(positionals[0])}`);
  const projectId = requireProject(values.project);
  const accountId = values.account;
  if (accountId !== undefined && !/^[a-z][a-z0-9_-]{0,62}$/.test(accountId))
    throw new UsageError(`--account: not an account id: ${JSON.stringify(accountId)}`);
  const { pool } = await ctx.connect();
  await withProject(pool, projectId, async (tx) => {
    if (!(await projectExists(tx, projectId)))
      throw new UsageError(`--project: no project "${projectId}"`);
  });

  if (sub === 'status') {
    const views = await withProject(pool, projectId, (tx) =>
      describeChannelAccounts(tx, accountId === undefined ? {} : { accountId }),
    );
    if (accountId !== undefined && views.length === 0)
      throw new UsageError(`--account: no channel account "${accountId}" in "${projectId}"`);
    if (values.json) ctx.print(JSON.stringify(views, null, 2));
    else if (views.length === 0) ctx.print('no channel accounts');
    else for (const v of views) printAccount(ctx, v, accountId !== undefined);
    return 0;
  }

  if (accountId === undefined) throw new UsageError(`--account: name the account to ${sub}`);
  const redis = await connectCliRedis(ctx);
  try {
    const { changed, account } = await requestAccountState(
      {
        pool,
        redis,
        redisPrefix: ctx.config.AWOOOP_REDIS_PREFIX,
        contracts: createContractReader(),
      },
      { projectId, accountId, action: sub, actor: ctx.actor },
    );
    if (values.json) ctx.print(JSON.stringify({ changed, account }, null, 2));
    else
      ctx.print(
        changed
          ? `${sub} requested for ${accountId} (desired ${account.desired}, now ${account.state ?? 'not seen yet'})`
          : `${accountId} is already ${account.desired}: nothing changed`,
      );
    return 0;
  } finally {
    redis.disconnect();
  }
}

function printAccount(ctx: CliContext, v: ChannelAccountView, withHistory: boolean) {
  const revision = v.revision ? `v${v.revision.version ?? '?'}` : 'no contract';
  const error = v.lastError ? `  last error ${v.lastError.code} at ${v.lastError.at}` : '';
  ctx.print(
    `${v.account}  ${v.channel}  ${(v.state ?? 'unseen').padEnd(12)} desired ${v.desired.padEnd(7)}  ${revision}  in ${v.counts.inbound} out ${v.counts.outbound} errors ${v.counts.errors}  last in ${v.lastInboundAt ?? '-'}  last out ${v.lastOutboundAt ?? '-'}${error}`,
  );
  if (!withHistory) return;
  for (const h of v.history)
    ctx.print(
      `  ${h.at}  ${h.kind.padEnd(7)} ${h.from ?? '-'} → ${h.to}  ${h.reason}  (${h.actor})`,
    );
}
