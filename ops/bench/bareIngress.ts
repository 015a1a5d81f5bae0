import { randomUUID } from 'node:crypto';
import type { Queue } from 'bullmq';
import Koa from 'koa';
import type pg from 'pg';
import { hopJob } from './baselineHops.ts';

/** The one path the bare ingress answers. */
export const BARE_INGRESS_PATH = '/ingest';

/**
 * The least a durable ingress can do: read and parse the JSON body, INSERT it as a run row,
 * add the first hop's job, answer 202 with the run id. No auth, no schema, no dedupe.
 */
export function createBareIngress({ pool, queue }: { pool: pg.Pool; queue: Queue }): Koa {
  const app = new Koa();
  app.use(async (ctx) => {
    if (ctx.method !== 'POST' || ctx.path !== BARE_INGRESS_PATH) {
      ctx.status = 404;
      return;
    }
    const chunks: Buffer[] = [];
    for await (const chunk of ctx.req as AsyncIterable<Buffer>) chunks.push(chunk);
    const raw = Buffer.concat(chunks).toString('utf8');
    try {
      JSON.parse(raw);
    } catch {
      ctx.status = 400;
      return;
    }
    const runId = randomUUID();
    await pool.query({
      name: 'bare_ingress_insert',
      text: 'INSERT INTO bench_runs (id, body) VALUES ($1, $2::jsonb)',
      values: [runId, raw],
    });
    const [job, options] = hopJob(1, runId);
    await queue.add(job.stage, job, options);
    ctx.status = 202;
    ctx.body = { run_id: runId };
  });
  return app;
}
