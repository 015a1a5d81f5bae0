import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { sql, type DatabasePool } from 'slonik';
import { z } from 'zod';
import { ACTUAL_STATES } from '../../db/channelAccounts.ts';
import { BREAKER_STATES, type BreakerState } from '../../db/providerEndpoints.ts';
import { withSweeper } from '../../db/withSweeper.ts';
import { admissionKeys } from '../../pipeline/admission/admissionKeys.ts';
import type { Stage } from '../../pipeline/contracts/runJob.ts';
import {
  BULKHEAD_FIELD,
  FAILURE_FIELD,
  OUTCOME_FIELD,
  STAGE_BUCKETS_MS,
} from '../../workers/recordStageMetrics.ts';

const BREAKER_STATE_VALUE: Record<BreakerState, number> = { closed: 0, half_open: 1, open: 2 };

/**
 * The Prometheus text exposition of the platform: runs by project and state, failed runs by
 * code, outbound messages by kind and status (gauges from Postgres, read with the column-limited sweeper
 * role), provider endpoints' breakers, queue depth per stage (BullMQ), and stage latency histograms, outcomes and failures by
 * code (the counters the workers keep in Redis).
 */
export async function renderMetrics({
  pool,
  redis,
  prefix,
  queues,
}: {
  pool: DatabasePool;
  redis: Redis;
  prefix: string;
  queues: Record<Stage, Queue>;
}): Promise<string> {
  const out: string[] = [];
  const metric = (name: string, type: string, help: string) =>
    out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
  const label = (labels: Record<string, string>) =>
    `{${Object.entries(labels)
      .map(([k, v]) => `${k}="${v.replace(/["\\\n]/g, '_')}"`)
      .join(',')}}`;

  const { runs, failures, outbound, toolCalls, approvals, accounts, alerts, breakers } =
    await withSweeper(pool, async (tx) => {
      const runs = await tx.any(sql.type(
        z.object({ projectId: z.string(), state: z.string(), n: z.number() }),
      )`
      SELECT project_id AS "projectId", state, count(*) AS n FROM runs GROUP BY 1, 2 ORDER BY 1, 2`);
      const failures = await tx.any(sql.type(
        z.object({ projectId: z.string(), code: z.string(), n: z.number() }),
      )`
      SELECT project_id AS "projectId", failure_code AS code, count(*) AS n FROM runs
       WHERE failure_code IS NOT NULL GROUP BY 1, 2 ORDER BY 1, 2`);
      const outbound = await tx.any(sql.type(
        z.object({ projectId: z.string(), kind: z.string(), status: z.string(), n: z.number() }),
      )`
      SELECT project_id AS "projectId", kind, status, count(*) AS n FROM outbound_messages
       GROUP BY 1, 2, 3 ORDER BY 1, 2, 3`);
      const toolCalls = await tx.any(sql.type(
        z.object({ projectId: z.string(), status: z.string(), n: z.number() }),
      )`
      SELECT project_id AS "projectId", status, count(*) AS n FROM tool_calls GROUP BY 1, 2 ORDER BY 1, 2`);
      const approvals = await tx.any(sql.type(
        z.object({ projectId: z.string(), status: z.string(), n: z.number() }),
      )`
      SELECT project_id AS "projectId", status, count(*) AS n FROM approvals GROUP BY 1, 2 ORDER BY 1, 2`);
      const accounts = await tx.any(sql.type(
        z.object({
          projectId: z.string(),
          accountId: z.string(),
          channel: z.string(),
          desired: z.string(),
          actual: z.string(),
          inbound: z.number(),
          outbound: z.number(),
          errors: z.number(),
        }),
      )`
      SELECT project_id AS "projectId", account_id AS "accountId", channel,
             desired_state AS desired, actual_state AS actual, inbound_count AS inbound,
             outbound_count AS outbound, error_count AS errors
        FROM channel_accounts ORDER BY 1, 2`);
      const alerts = await tx.any(sql.type(
        z.object({ projectId: z.string(), limitName: z.string(), n: z.number() }),
      )`
      SELECT project_id AS "projectId", limit_name AS "limitName", count(*) AS n FROM budget_alerts
       GROUP BY 1, 2 ORDER BY 1, 2`);
      const breakers = await tx.any(sql.type(
        z.object({
          provider: z.string(),
          baseUrl: z.string(),
          state: z.enum(BREAKER_STATES),
          failures: z.number(),
          openedCount: z.number(),
        }),
      )`
      SELECT provider, base_url AS "baseUrl", state, failures, opened_count AS "openedCount"
        FROM provider_endpoints ORDER BY provider, base_url`);
      return { runs, failures, outbound, toolCalls, approvals, accounts, alerts, breakers };
    });
  // Counts of rows now, not events since start: they go down (a message is sent, retention
  // deletes), so they are gauges.
  metric('awooop_runs', 'gauge', 'Runs by project and state.');
  for (const r of runs)
    out.push(`awooop_runs${label({ project: r.projectId, state: r.state })} ${r.n}`);
  metric('awooop_runs_failed', 'gauge', 'Failed runs by project and failure code.');
  for (const r of failures)
    out.push(`awooop_runs_failed${label({ project: r.projectId, code: r.code })} ${r.n}`);
  metric(
    'awooop_outbound_messages',
    'gauge',
    'Outbound ledger rows by project, kind (reply, status, failure, approval, alert) and status.',
  );
  for (const r of outbound)
    out.push(
      `awooop_outbound_messages${label({ project: r.projectId, kind: r.kind, status: r.status })} ${r.n}`,
    );
  metric('awooop_tool_calls', 'gauge', 'Tool calls the gateway saw, by project and status.');
  for (const r of toolCalls)
    out.push(`awooop_tool_calls${label({ project: r.projectId, status: r.status })} ${r.n}`);
  metric('awooop_approvals', 'gauge', 'Approvals by project and status (pending: waiting now).');
  for (const r of approvals)
    out.push(`awooop_approvals${label({ project: r.projectId, status: r.status })} ${r.n}`);

  metric(
    'awooop_channel_account_state',
    'gauge',
    'Channel accounts by state (1 for the state the channels process last reported).',
  );
  for (const a of accounts)
    for (const state of ACTUAL_STATES)
      out.push(
        `awooop_channel_account_state${label({ project: a.projectId, account: a.accountId, channel: a.channel, state })} ${a.actual === state ? 1 : 0}`,
      );
  metric(
    'awooop_channel_account_stopped',
    'gauge',
    'Whether an operator has stopped the channel account (1) or wants it running (0).',
  );
  for (const a of accounts)
    out.push(
      `awooop_channel_account_stopped${label({ project: a.projectId, account: a.accountId })} ${a.desired === 'stopped' ? 1 : 0}`,
    );
  for (const [name, help, field] of [
    ['awooop_channel_inbound_total', 'Messages a channel account took in (new runs).', 'inbound'],
    ['awooop_channel_outbound_total', 'Messages a channel account sent.', 'outbound'],
    [
      'awooop_channel_errors_total',
      'Errors of a channel account (refused sends, failed starts).',
      'errors',
    ],
  ] as const) {
    metric(name, 'counter', `${help} Flushed from Redis every few seconds.`);
    for (const a of accounts)
      out.push(`${name}${label({ project: a.projectId, account: a.accountId })} ${a[field]}`);
  }
  metric(
    'awooop_budget_alerts',
    'gauge',
    'Budget alerts raised (one per period and limit), by project and limit.',
  );
  for (const r of alerts)
    out.push(`awooop_budget_alerts${label({ project: r.projectId, limit: r.limitName })} ${r.n}`);

  metric(
    'awooop_provider_breaker_state',
    'gauge',
    "A provider endpoint's circuit breaker: 0 closed, 1 half-open (probing), 2 open (skipped).",
  );
  for (const b of breakers)
    out.push(
      `awooop_provider_breaker_state${label({ provider: b.provider, endpoint: b.baseUrl })} ${BREAKER_STATE_VALUE[b.state]}`,
    );
  metric(
    'awooop_provider_breaker_opened_total',
    'counter',
    "How often a provider endpoint's breaker opened (an operator's reset sets it back to 0).",
  );
  for (const b of breakers)
    out.push(
      `awooop_provider_breaker_opened_total${label({ provider: b.provider, endpoint: b.baseUrl })} ${b.openedCount}`,
    );

  metric('awooop_queue_jobs', 'gauge', 'Jobs per stage queue and job state.');
  for (const [stage, queue] of Object.entries(queues)) {
    const counts = await queue.getJobCounts(
      'waiting',
      'active',
      'delayed',
      'failed',
      'prioritized',
    );
    for (const [state, n] of Object.entries(counts))
      out.push(`awooop_queue_jobs${label({ stage, state })} ${n}`);
  }

  metric('awooop_stage_duration_ms', 'histogram', 'Stage job duration in milliseconds.');
  const outcomes: string[] = [];
  const failed: string[] = [];
  const waits: string[] = [];
  for (const stage of Object.keys(queues)) {
    const h = await redis.hgetall(`${prefix}:metrics:stage:${stage}`);
    const count = Number(h.count ?? 0);
    for (const le of STAGE_BUCKETS_MS)
      out.push(
        `awooop_stage_duration_ms_bucket${label({ stage, le: String(le) })} ${Number(h[`le_${le}`] ?? 0)}`,
      );
    out.push(`awooop_stage_duration_ms_bucket${label({ stage, le: '+Inf' })} ${count}`);
    out.push(`awooop_stage_duration_ms_sum${label({ stage })} ${Number(h.sum_ms ?? 0)}`);
    out.push(`awooop_stage_duration_ms_count${label({ stage })} ${count}`);
    for (const [field, n] of Object.entries(h)) {
      if (field.startsWith(OUTCOME_FIELD))
        outcomes.push(
          `awooop_stage_jobs_total${label({ stage, outcome: field.slice(OUTCOME_FIELD.length) })} ${n}`,
        );
      if (field.startsWith(FAILURE_FIELD))
        failed.push(
          `awooop_stage_failures_total${label({ stage, code: field.slice(FAILURE_FIELD.length) })} ${n}`,
        );
      if (field.startsWith(BULKHEAD_FIELD))
        waits.push(
          `awooop_bulkhead_waits_total${label({ stage, share: field.slice(BULKHEAD_FIELD.length) })} ${n}`,
        );
    }
  }
  metric(
    'awooop_stage_jobs_total',
    'counter',
    'Stage jobs by outcome (advanced, waited, retried, failed).',
  );
  out.push(...outcomes);
  metric(
    'awooop_stage_failures_total',
    'counter',
    'Stage jobs that failed for good (their run failed), by stage and error code.',
  );
  out.push(...failed);

  metric(
    'awooop_admission_total',
    'counter',
    'Messages ingress refused (reason rate, project_backlog, platform_backlog) or absorbed past a limit (absorbed: written, run delayed), by project.',
  );
  const refusals = await redis.hgetall(admissionKeys.refusals(prefix));
  for (const [field, n] of Object.entries(refusals).sort()) {
    const [project = '', reason = ''] = field.split('|');
    out.push(`awooop_admission_total${label({ project, reason })} ${n}`);
  }
  metric(
    'awooop_backlog_runs',
    'gauge',
    'Runs accepted and not finished, as admission counts them.',
  );
  out.push(
    `awooop_backlog_runs ${await redis.zcount(admissionKeys.allRuns(prefix), Date.now(), '+inf')}`,
  );

  metric(
    'awooop_bulkhead_waits_total',
    'counter',
    'Stage jobs sent back to the queue because a share they need was full, by stage and share kind.',
  );
  out.push(...waits);
  return `${out.join('\n')}\n`;
}
