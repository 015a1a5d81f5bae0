import { z } from 'zod';
import { APPROVAL_STATUSES, listApprovals, type ApprovalStatus } from '../../db/approvals.ts';
import { projectExists } from '../../db/projects.ts';
import { withProject } from '../../db/withProject.ts';
import { decideApproval } from '../../pipeline/approvals/decideApproval.ts';
import { describeApproval } from '../../pipeline/approvals/describeApproval.ts';
import { AclSubject } from '../../pipeline/contracts/projectContract.ts';
import { AppError } from '../../pipeline/errors.ts';
import { BUILTIN_CHANNEL_PLUGINS } from '../../pipeline/channels/builtinChannelPlugins.ts';
import { createChannelRegistry } from '../../pipeline/channels/registry.ts';
import { createContractReader } from '../../pipeline/runs/createContractReader.ts';
import { createStageQueues } from '../../workers/stageQueues.ts';
import type { CliContext } from './CliContext.ts';
import { connectCliRedis } from './connectCliRedis.ts';
import { parseCommandArgs, parsePositiveInt, requireProject } from './parseCommandArgs.ts';
import { UsageError } from './UsageError.ts';

const USAGE = `usage:
  awooop approvals list --project P [--status S] [--run RUN_ID] [--limit N] [--json]   newest first
  awooop approvals approve APPROVAL_ID --project P --as SUBJECT [--sha CALL_SHA256]   the run resumes and makes the call
  awooop approvals reject APPROVAL_ID --project P --as SUBJECT [--sha CALL_SHA256]    the run fails with APPROVAL_REJECTED
  (SUBJECT: the approver deciding, an ACL member of the project with the approver or admin
  role, e.g. email:ops@example.com; with --key, the key decides as api:<key id> instead)`;

/**
 * `awooop approvals list|approve|reject`: the calls waiting for a human, and deciding them
 * as `--as SUBJECT`, an approver in the project's ACL (a decision is recorded under that
 * subject; one who is not an approver is refused and nothing changes). `--sha` binds the
 * decision to the call digest the operator checked: an approval bound to another call is
 * refused.
 */
export async function approvalsCommand(ctx: CliContext, [sub, ...args]: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs(args, {
    project: { type: 'string', short: 'p' },
    status: { type: 'string' },
    run: { type: 'string' },
    limit: { type: 'string' },
    sha: { type: 'string' },
    as: { type: 'string' },
    json: { type: 'boolean' },
  });
  if (sub !== 'list' && sub !== 'approve' && sub !== 'reject') throw new UsageError(USAGE);
  const projectId = requireProject(values.project);
  if (sub === 'list') {
    const status = values.status?.toLowerCase();
    if (status !== undefined && !APPROVAL_STATUSES.includes(status as ApprovalStatus))
      throw new UsageError(
        `--status: "${values.status}" is not one of ${APPROVAL_STATUSES.join(', ')}`,
      );
    if (values.run !== undefined && !z.guid().safeParse(values.run).success)
      throw new UsageError(`--run: not a run id (a UUID): ${JSON.stringify(values.run)}`);
    const filter = {
      limit: parsePositiveInt('limit', values.limit) ?? 50,
      ...(status ? { status: status as ApprovalStatus } : {}),
      ...(values.run ? { runId: values.run } : {}),
    };
    const { pool } = await ctx.connect();
    const approvals = await withProject(pool, projectId, async (tx) => {
      // `--project` naming no project is a usage error, not an empty list
      if (!(await projectExists(tx, projectId)))
        throw new UsageError(`--project: no project "${projectId}"`);
      return listApprovals(tx, filter);
    });
    const views = approvals.map(describeApproval);
    if (values.json) {
      ctx.print(JSON.stringify(views, null, 2));
      return 0;
    }
    for (const a of views) {
      const decided = a.decidedBy ? `  by ${a.decidedBy} via ${a.decidedVia}` : '';
      ctx.print(
        `${a.id}  ${a.status.padEnd(8)}  ${a.agent}  ${a.tool} (${a.risk})  run ${a.runId}  expires ${a.expiresAt}${decided}`,
      );
    }
    if (views.length === 0) ctx.print('no approvals');
    return 0;
  }

  const approvalId = positionals[0];
  if (!approvalId || !z.guid().safeParse(approvalId).success)
    throw new UsageError(
      `APPROVAL_ID: name the approval to ${sub} (a UUID), got ${JSON.stringify(approvalId ?? '')}`,
    );
  if (positionals.length > 1)
    throw new UsageError(`${sub}: one APPROVAL_ID at a time, got ${positionals.length}`);
  if (values.sha !== undefined && !/^[0-9a-fA-F]{64}$/.test(values.sha))
    throw new UsageError(`--sha: expected the call's SHA-256 (64 hex characters)`);
  const approver = approverOf(ctx, values.as, sub);
  const { pool } = await ctx.connect();
  // Redis first: a decision is not recorded when the run could not then be moved on.
  const redis = await connectCliRedis(ctx);
  const queues = createStageQueues(redis, ctx.config.AWOOOP_REDIS_PREFIX);
  try {
    // Harmless twice: decideApproval decides a pending approval once; a repeat is refused.
    const approval = await decideApproval(
      {
        pool,
        enqueue: queues.enqueue,
        contracts: createContractReader(),
        channels: createChannelRegistry(BUILTIN_CHANNEL_PLUGINS),
      },
      {
        projectId,
        approvalId: approvalId.toLowerCase(),
        decision: sub === 'approve' ? 'approved' : 'rejected',
        decidedBy: approver,
        via: 'cli',
        ...(values.sha ? { expectedSha256: values.sha.toLowerCase() } : {}),
      },
    ).catch((error: unknown) => {
      if (error instanceof AppError && error.code === 'NOT_APPROVER')
        throw new AppError(
          error.code,
          `${ctx.caller.kind === 'key' ? '--key' : '--as'}: ${error.message}`,
          {
            status: error.status,
          },
        );
      throw error;
    });
    if (values.json) ctx.print(JSON.stringify(describeApproval(approval), null, 2));
    else
      ctx.print(
        `${approval.status} ${approval.approvalId} (${approval.tool}, run ${approval.runId}) as ${approver}`,
      );
    return 0;
  } finally {
    await queues.close();
    redis.disconnect();
  }
}

/**
 * Who decides: with a key, the key itself (`api:<key id>`, which must be an ACL approver like
 * any other subject); without one, the approver `--as` names, required and shaped like an ACL
 * subject.
 */
function approverOf(ctx: CliContext, as: string | undefined, sub: string): string {
  if (ctx.caller.kind === 'key') {
    if (as !== undefined)
      throw new UsageError(`--as: not with a key (the key decides as api:${ctx.caller.keyId})`);
    return `api:${ctx.caller.keyId}`;
  }
  if (as === undefined)
    throw new UsageError(
      `--as: name the approver who ${sub}s (an ACL subject of the project, e.g. email:ops@example.com)`,
    );
  const parsed = AclSubject.safeParse(as);
  if (!parsed.success)
    throw new UsageError(`--as: ${parsed.error.issues[0]?.message}, got ${JSON.stringify(as)}`);
  return as;
}
