import { randomBytes } from 'node:crypto';
import { Queue, Worker, type ConnectionOptions, type JobsOptions } from 'bullmq';
import type pg from 'pg';

/** The baseline's chain: as many hops as AwoooP has stages. */
export const HOPS = [1, 2, 3, 4, 5] as const;

/** How a hop writes: one statement (a CTE) or BEGIN / UPDATE / INSERT / COMMIT. */
export type HopWrite = 'cte' | 'tx';

/** A baseline job: the same fields, and so the same size, as an AwoooP stage job. */
export type BaselineJob = { projectId: string; runId: string; traceId: string; stage: string };

/** The queue of hop `n`. */
export function hopQueueName(hop: number): string {
  return `baseline-hop${hop}`;
}

/** A hop's job and options, as `stageJobOptions` builds them for a stage: same id scheme and retention. */
export function hopJob(hop: number, runId: string, traceId?: string): [BaselineJob, JobsOptions] {
  return [
    {
      projectId: 'bench',
      runId,
      traceId: traceId ?? randomBytes(16).toString('hex'),
      stage: `hop${hop}`,
    },
    {
      jobId: `hop${hop}-${runId}`,
      attempts: 5,
      backoff: { type: 'exponential', delay: 500, jitter: 0.5 },
      removeOnComplete: true,
      removeOnFail: { age: 7 * 24 * 3600, count: 50_000 },
    },
  ];
}

const UPDATE = `UPDATE bench_runs SET hop = $2::smallint, updated_at = now(),
  completed_at = CASE WHEN $3::boolean THEN now() END WHERE id = $1`;
const INSERT = `INSERT INTO bench_hops (run_id, hop) VALUES ($1, $2::smallint)`;
const AS_ONE = `WITH up AS (${UPDATE} RETURNING id)
  INSERT INTO bench_hops (run_id, hop) SELECT id, $2::smallint FROM up`;

/**
 * One hop's Postgres transaction: one UPDATE of the run row and one INSERT of a hop row, as
 * named prepared statements like AwoooP's own (planned once per connection).
 */
async function writeHop(pool: pg.Pool, write: HopWrite, runId: string, hop: number) {
  const params = [runId, hop, hop === HOPS.length];
  if (write === 'cte') {
    await pool.query({ name: 'baseline_hop', text: AS_ONE, values: params });
    return;
  }
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await client.query({ name: 'baseline_update', text: UPDATE, values: params });
    await client.query({ name: 'baseline_insert', text: INSERT, values: [runId, hop] });
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  } finally {
    client.release();
  }
}

/**
 * Workers for the given hops of the bare chain: each job does its hop's one transaction and
 * adds the next hop's job, and nothing else (no parsing, no logging, no metrics) — the least
 * a durable five-stage pipeline on BullMQ and Postgres can do.
 */
export function startBaselineHops({
  hops,
  pool,
  connection,
  prefix,
  concurrency,
  write,
}: {
  hops: readonly number[];
  pool: pg.Pool;
  connection: ConnectionOptions;
  prefix: string;
  concurrency: number;
  write: HopWrite;
}): { close(): Promise<void> } {
  const queues = new Map<number, Queue>();
  const queueOf = (hop: number) => {
    let queue = queues.get(hop);
    if (!queue) queues.set(hop, (queue = new Queue(hopQueueName(hop), { connection, prefix })));
    return queue;
  };
  const workers = hops.map(
    (hop) =>
      new Worker(
        hopQueueName(hop),
        async (job) => {
          const data = job.data as BaselineJob; // the bare chain trusts its own jobs
          await writeHop(pool, write, data.runId, hop);
          if (hop < HOPS.length) {
            const [next, options] = hopJob(hop + 1, data.runId, data.traceId);
            await queueOf(hop + 1).add(next.stage, next, options);
          }
        },
        { connection, prefix, concurrency },
      ),
  );
  return {
    async close() {
      await Promise.all(workers.map((w) => w.close()));
      await Promise.all([...queues.values()].map((q) => q.close()));
    },
  };
}
