import type { Worker } from 'bullmq';
import { Stage } from '../pipeline/contracts/runJob.ts';
import { deliver } from '../pipeline/stages/deliver.ts';
import { execute } from '../pipeline/stages/execute.ts';
import { policy } from '../pipeline/stages/policy.ts';
import { resolve } from '../pipeline/stages/resolve.ts';
import { sanitize } from '../pipeline/stages/sanitize.ts';
import { createStageWorker, type StageHandler } from '../workers/createStageWorker.ts';
import { recordStageMetrics } from '../workers/recordStageMetrics.ts';
import { createLogger } from './createLogger.ts';
import { createRuntime } from './createRuntime.ts';
import type { Config } from './loadConfig.ts';
import { onShutdown } from './onShutdown.ts';

/** Each stage's plain function. */
export const STAGE_HANDLERS: Record<Stage, StageHandler> = {
  resolve,
  policy,
  execute,
  sanitize,
  deliver,
};

/** How long a stopping worker waits for running jobs before handing them back. */
const CLOSE_DEADLINE_MS = 10_000;

/**
 * A worker process for one or more stages (`all` for every stage in one process). On SIGTERM
 * it stops taking jobs and waits for the running ones up to a deadline; a job still running
 * then is abandoned and, its lock expiring, taken up again by another worker — every stage is
 * harmless to run twice.
 */
export async function runWorker(config: Config, stages: readonly Stage[]): Promise<number> {
  const name = stages.length === 1 ? stages[0]! : 'all';
  const logger = createLogger({ level: config.LOG_LEVEL, name: `worker-${name}` });
  const runtime = await createRuntime(config, {
    logger,
    actor: `worker:${name}`,
    // A stage holds a connection only inside its short transactions (never across a model or
    // channel call), so a small pool serves many concurrent jobs; with the web (20) and the
    // sweeper (4), the Procfile's seven processes stay within Postgres's default 100.
    maxPoolSize: Math.min(10, config.AWOOOP_WORKER_CONCURRENCY + 2),
  });
  const observe = recordStageMetrics(runtime.ctx.redis, config.AWOOOP_REDIS_PREFIX);
  const workers: Worker[] = stages.map((stage) => {
    const worker = createStageWorker({
      stage,
      handler: STAGE_HANDLERS[stage],
      ctx: { ...runtime.ctx, actor: `worker:${stage}` },
      enqueue: runtime.queues.enqueue,
      connection: runtime.ctx.redis,
      prefix: config.AWOOOP_REDIS_PREFIX,
      concurrency: config.AWOOOP_WORKER_CONCURRENCY,
      lockMs: config.AWOOOP_JOB_LOCK_MS,
      observe,
    });
    return worker;
  });
  logger.info({ stages, concurrency: config.AWOOOP_WORKER_CONCURRENCY }, `worker ${name} running`);
  await onShutdown(
    logger,
    async () => {
      // worker.close() waits for running jobs with no limit of its own: race it with a deadline,
      // then cancel what still runs (its processor sees the abort and hands the job back to
      // the queue) and give that a moment before the connections close.
      const closing = Promise.all(workers.map((w) => w.close()));
      const settle = (ms: number) =>
        Promise.race([closing, new Promise((r) => setTimeout(r, ms).unref())]);
      await settle(CLOSE_DEADLINE_MS);
      for (const w of workers) w.cancelAllJobs('shutdown');
      await settle(2000);
      await observe.close();
      await runtime.close();
    },
    { deadlineMs: CLOSE_DEADLINE_MS + 5000 },
  );
  return 0;
}

/** Parses `worker <stage|all>` arguments. */
export function parseStages(arg: string | undefined): Stage[] | null {
  if (arg === 'all') return [...Stage.options];
  const parsed = Stage.safeParse(arg);
  return parsed.success ? [parsed.data] : null;
}
