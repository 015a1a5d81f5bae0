import { Queue } from 'bullmq';
import { getRun } from '../../db/runs.ts';
import { withProject } from '../../db/withProject.ts';
import { RunJob, Stage } from '../../pipeline/contracts/runJob.ts';
import type { CliContext } from './CliContext.ts';
import { connectCliRedis } from './connectCliRedis.ts';
import { parseCommandArgs, parsePositiveInt } from './parseCommandArgs.ts';
import { UsageError } from './UsageError.ts';

const USAGE = `usage:
  awooop jobs failed STAGE [--limit N]     failed (exhausted) jobs of a stage queue
  awooop jobs retry JOB_ID | --all STAGE   put failed jobs back in their queue (a failed run: awooop runs retry)
  awooop jobs inspect JOB_ID               a job's data, attempts, error and stack`;

/** `awooop jobs failed|retry|inspect`: the BullMQ side of stuck or failed runs. */
export async function jobsCommand(ctx: CliContext, [sub, ...args]: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs(args, {
    all: { type: 'string' },
    limit: { type: 'string' },
  });
  const redis = await connectCliRedis(ctx);
  const queues = new Map<Stage, Queue>();
  const queue = (stage: Stage) => {
    let q = queues.get(stage);
    if (!q)
      queues.set(
        stage,
        (q = new Queue(stage, { connection: redis, prefix: ctx.config.AWOOOP_REDIS_PREFIX })),
      );
    return q;
  };
  const stageOf = (value: string | undefined, what: string): Stage => {
    const parsed = Stage.safeParse(value);
    if (!parsed.success)
      throw new UsageError(
        `${what}: expected a stage (${Stage.options.join(', ')}), got ${JSON.stringify(value ?? '')}`,
      );
    return parsed.data;
  };
  const jobOf = async (jobId: string | undefined) => {
    const match = /^([a-z]+)-[0-9a-f-]{36}(-notice)?$/.exec(jobId ?? '');
    if (!match)
      throw new UsageError(
        `JOB_ID: expected <stage>-<run id> or deliver-<run id>-notice, got ${JSON.stringify(jobId ?? '')}`,
      );
    const job = await queue(stageOf(match[1], 'JOB_ID')).getJob(jobId!);
    return job ?? null;
  };
  try {
    switch (sub) {
      case 'failed': {
        const stage = stageOf(positionals[0], 'STAGE');
        const jobs = await queue(stage).getFailed(
          0,
          (parsePositiveInt('limit', values.limit) ?? 50) - 1,
        );
        for (const j of jobs)
          ctx.print(
            `${j.id}  attempts ${j.attemptsMade}  ${new Date(j.finishedOn ?? j.timestamp).toISOString()}  ${j.failedReason ?? ''}`,
          );
        if (jobs.length === 0) ctx.print(`no failed ${stage} jobs`);
        return 0;
      }
      case 'retry': {
        if (values.all) {
          const q = queue(stageOf(values.all, '--all'));
          const failed = await q.getFailed(0, -1);
          for (const j of failed) await j.retry('failed');
          ctx.print(`retried ${failed.length} failed ${values.all} job(s)`);
          return 0;
        }
        const job = await jobOf(positionals[0]);
        if (!job) {
          ctx.print(`no job ${positionals[0]}`);
          return 1;
        }
        if (!(await job.isFailed())) {
          ctx.print(`job ${job.id} is ${await job.getState()}, not failed`);
          return 1;
        }
        // The job's last attempt failed its run; run again, the stage would find the run
        // FAILED and do nothing. Reviving the run is `runs retry`.
        const data = RunJob.safeParse(job.data);
        if (data.success) {
          const { pool } = await ctx.connect();
          const run = await withProject(pool, data.data.projectId, (tx) =>
            getRun(tx, data.data.runId),
          );
          if (run?.state === 'FAILED') {
            ctx.print(
              `job ${job.id} belongs to run ${run.runId}, which is FAILED (${run.failureCode}): retrying the job would change nothing; use: awooop runs retry ${run.runId} --project ${run.projectId}`,
            );
            return 1;
          }
        }
        await job.retry('failed');
        ctx.print(`retried ${job.id}`);
        return 0;
      }
      case 'inspect': {
        const job = await jobOf(positionals[0]);
        if (!job) {
          ctx.print(`no job ${positionals[0]}`);
          return 1;
        }
        ctx.print(
          JSON.stringify(
            {
              id: job.id,
              queue: job.queueName,
              state: await job.getState(),
              data: job.data as unknown,
              attemptsMade: job.attemptsMade,
              attempts: job.opts.attempts,
              createdAt: new Date(job.timestamp).toISOString(),
              processedOn: job.processedOn ? new Date(job.processedOn).toISOString() : null,
              finishedOn: job.finishedOn ? new Date(job.finishedOn).toISOString() : null,
              failedReason: job.failedReason ?? null,
              stacktrace: job.stacktrace,
            },
            null,
            2,
          ),
        );
        return 0;
      }
      default:
        throw new UsageError(USAGE);
    }
  } finally {
    await Promise.all([...queues.values()].map((q) => q.close()));
    redis.disconnect();
  }
}
