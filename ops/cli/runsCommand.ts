import { sql } from 'slonik';
import { z } from 'zod';
import { projectExists } from '../../db/projects.ts';
import { listRuns, type Run } from '../../db/runs.ts';
import { withPlatform } from '../../db/withPlatform.ts';
import { withProject } from '../../db/withProject.ts';
import { describeRun } from '../../pipeline/runs/describeRun.ts';
import { retryRun } from '../../pipeline/runs/retryRun.ts';
import { RUN_STATES, stageJobId, type RunState } from '../../pipeline/contracts/runState.ts';
import { createStageQueues } from '../../workers/stageQueues.ts';
import type { CliContext } from './CliContext.ts';
import { connectCliRedis } from './connectCliRedis.ts';
import { parseCommandArgs, parsePositiveInt, requireProject } from './parseCommandArgs.ts';
import { UsageError } from './UsageError.ts';

const USAGE = `usage:
  awooop runs list [--project P] [--state S] [--limit N] [--json]   newest first (all projects, audited, without --project)
  awooop runs show RUN_ID [--project P] [--json]                    the timeline: stages, times, revisions, outbound messages
  awooop runs retry RUN_ID --project P                              a failed run again, from the stage it failed in (audited)`;

/** `awooop runs list|show|retry` */
export async function runsCommand(ctx: CliContext, [sub, ...args]: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs(args, {
    project: { type: 'string', short: 'p' },
    state: { type: 'string' },
    limit: { type: 'string' },
    json: { type: 'boolean' },
  });
  const { pool } = await ctx.connect();
  switch (sub) {
    case 'list': {
      const state = values.state?.toUpperCase();
      if (state !== undefined && !RUN_STATES.includes(state as RunState)) {
        throw new UsageError(`--state: "${values.state}" is not one of ${RUN_STATES.join(', ')}`);
      }
      const options = {
        limit: parsePositiveInt('limit', values.limit) ?? 50,
        ...(state ? { state: state as RunState } : {}),
      };
      const runs: readonly Run[] = values.project
        ? await withProject(pool, requireProject(values.project), async (tx) => {
            // `--project` naming no project is a usage error, not an empty list
            if (!(await projectExists(tx, values.project!)))
              throw new UsageError(`--project: no project "${values.project}"`);
            return listRuns(tx, options);
          })
        : await withPlatform(pool, { actor: ctx.actor, reason: 'runs list (all projects)' }, (tx) =>
            listRuns(tx, options),
          );
      if (values.json) {
        ctx.print(JSON.stringify(runs, null, 2));
        return 0;
      }
      for (const r of runs) {
        ctx.print(
          `${r.runId}  ${r.projectId}  ${r.state.padEnd(9)}  ${r.channel}/${r.accountId}  ${r.agent ?? '-'}  ${r.mode ?? '-'}  ${new Date(r.createdAt).toISOString()}${r.failureCode ? `  ${r.failureCode}` : ''}`,
        );
      }
      if (runs.length === 0) ctx.print('no runs');
      return 0;
    }
    case 'show': {
      const runId = positionals[0];
      if (!runId || !z.uuid().safeParse(runId).success)
        throw new UsageError('show: name the RUN_ID (a UUID)');
      const projectId = values.project
        ? requireProject(values.project)
        : await withPlatform(
            pool,
            { actor: ctx.actor, reason: `runs show ${runId}` },
            async (tx) => {
              const row = await tx.maybeOne(sql.type(z.object({ projectId: z.string() }))`
              SELECT project_id AS "projectId" FROM runs WHERE run_id = ${runId}`);
              return row?.projectId ?? null;
            },
          );
      if (!projectId) {
        ctx.print(`no run ${runId}`);
        return 1;
      }
      const view = await describeRun(pool, projectId, runId);
      if (values.json) {
        ctx.print(JSON.stringify(view, null, 2));
        return 0;
      }
      ctx.print(`run ${view.run_id}  project ${view.project_id}  trace ${view.trace_id}`);
      ctx.print(
        `state ${view.state}${view.failure ? `  failure ${view.failure.code}: ${view.failure.message}` : ''}`,
      );
      ctx.print(
        `agent ${view.agent ?? '-'}  mode ${view.mode ?? '-'}${view.live === false ? ' (recorded only)' : ''}  session ${view.session_key ?? '-'}`,
      );
      if (view.attachments.length > 0) {
        ctx.print('attachments:');
        // Names are the sender's: quoted, so no control character reaches the terminal.
        for (const a of view.attachments)
          ctx.print(
            `  ${a.kind}${a.name === null ? '' : ` ${JSON.stringify(a.name)}`}${a.mime_type === null ? '' : `  ${JSON.stringify(a.mime_type)}`}${a.size_bytes === null ? '' : `  ${a.size_bytes} bytes`}${a.omitted === null ? '' : `  omitted: ${a.omitted}`}  ref ${JSON.stringify(a.ref)}`,
          );
      }
      ctx.print('timeline:');
      for (const t of view.timeline)
        ctx.print(
          `  ${t.at}  ${t.stage.padEnd(8)} ${(t.from ?? '-').padEnd(9)} -> ${t.to.padEnd(9)} ${String(t.ms).padStart(6)} ms`,
        );
      ctx.print('revisions:');
      for (const [contract, revision] of Object.entries(view.pinned))
        ctx.print(`  ${contract.padEnd(24)} ${revision}`);
      if (view.tool_calls.length > 0) {
        ctx.print('tool calls:');
        for (const c of view.tool_calls)
          ctx.print(
            `  ${c.at}  ${c.tool}  ${c.status}${c.code ? ` ${c.code}` : ''}${c.latency_ms === null ? '' : `  ${c.latency_ms} ms`}  args ${c.arguments_sha256.slice(0, 12)}`,
          );
      }
      if (view.approvals.length > 0) {
        ctx.print('approvals:');
        for (const a of view.approvals)
          ctx.print(
            `  ${a.approval_id}  ${a.tool}  ${a.status}${a.decided_by ? ` by ${a.decided_by} via ${a.decided_via}` : `  expires ${a.expires_at}`}  (${a.reasons.join(', ')})`,
          );
      }
      ctx.print('outbound:');
      for (const o of view.outbound)
        ctx.print(
          `  ${o.kind === 'approval' ? `approval ${o.approval_id} to ${o.recipient}` : o.kind === 'alert' ? `alert ${o.alert} to ${o.recipient}` : `${o.kind} #${o.chunk}`}  ${o.status}${o.method ? ` via ${o.method}` : ''}  attempts ${o.attempts}${o.error ? `  ${o.error}` : ''}`,
        );
      if (view.outbound.length === 0) ctx.print('  (none)');
      if (view.output !== null) ctx.print(`output:\n${view.output}`);
      return 0;
    }
    case 'retry': {
      const runId = positionals[0];
      if (!runId || !z.uuid().safeParse(runId).success)
        throw new UsageError('retry: name the RUN_ID (a UUID)');
      const projectId = requireProject(values.project);
      // Redis first: with it down the command fails here, before anything is changed.
      const redis = await connectCliRedis(ctx);
      const queues = createStageQueues(redis, ctx.config.AWOOOP_REDIS_PREFIX);
      try {
        const retried = await retryRun(
          {
            pool,
            logger: ctx.logger,
            actor: ctx.actor,
            enqueue: queues.enqueue,
            clearJob: async (stage, id, notice) => {
              const job = await queues.queues[stage].getJob(stageJobId(stage, id, notice));
              if (!job) return 'none';
              if ((await job.getState()) === 'active') return 'running';
              try {
                await job.remove();
              } catch (error) {
                // taken by a worker since: BullMQ refuses to remove a locked job
                if ((await job.getState()) === 'active') return 'running';
                throw error;
              }
              return 'removed';
            },
          },
          { projectId, runId },
        );
        ctx.print(
          `retried run ${retried.runId} (retry ${retried.retry}, was ${retried.failureCode}): back in ${retried.state}, ${retried.stage} enqueued${retried.requeued > 0 ? `, ${retried.requeued} unsent chunk(s) queued again` : ''}`,
        );
        return 0;
      } finally {
        await queues.close();
        redis.disconnect();
      }
    }
    default:
      throw new UsageError(USAGE);
  }
}
