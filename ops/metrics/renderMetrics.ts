import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import {
  collectDefaultMetrics,
  Counter,
  Gauge,
  Histogram,
  Registry,
  type MetricObjectWithValues,
  type MetricValueWithName,
} from 'prom-client';
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
 * The rendering process's own metrics (prom-client's defaults: CPU, memory, event loop lag,
 * GC, handles), made once per process: their collectors watch the process from creation, so a
 * registry made per scrape would start new watchers each time.
 */
export function createProcessMetrics(): Registry {
  const register = new Registry();
  collectDefaultMetrics({ register });
  return register;
}

type StageSeries = { stage: string; buckets: number[]; sumSeconds: number; count: number };

/**
 * A histogram whose samples were counted elsewhere: the workers (separate processes) keep
 * their stage durations as cumulative bucket counts in Redis, and prom-client's Histogram only
 * counts observations made in this process. Set from those counts per scrape, it is exposed
 * exactly as prom-client exposes a histogram (`_bucket` with `le`, `_sum`, `_count`).
 */
class CountedHistogram extends Histogram<'stage'> {
  private readonly series: StageSeries[] = [];

  private readonly config: { name: string; help: string; buckets: readonly number[] };

  constructor(config: { name: string; help: string; buckets: readonly number[] }) {
    super({ ...config, buckets: [...config.buckets], labelNames: ['stage'], registers: [] });
    this.config = config;
  }

  load(series: StageSeries): void {
    this.series.push(series);
  }

  /** What the registry renders (it asks this before `get`). */
  getForPromString(): Promise<HistogramValues> {
    const { name, help, buckets: bounds } = this.config;
    const bucket = `${name}_bucket`;
    const values = this.series.flatMap(({ stage, buckets, sumSeconds, count }) => [
      ...bounds.map((le, i) => ({
        labels: { stage, le },
        value: buckets[i] ?? 0,
        metricName: bucket,
      })),
      { labels: { stage, le: '+Inf' }, value: count, metricName: bucket },
      { labels: { stage }, value: sumSeconds, metricName: `${name}_sum` },
      { labels: { stage }, value: count, metricName: `${name}_count` },
    ]);
    // prom-client declares `type` as an enum, but its registry prints the string it holds.
    return Promise.resolve({
      name,
      help,
      type: 'histogram',
      values,
      aggregator: 'sum',
    } as unknown as HistogramValues);
  }

  override get(): Promise<HistogramValues> {
    return this.getForPromString();
  }
}

type HistogramValues = MetricObjectWithValues<MetricValueWithName<'stage'>>;

/**
 * The Prometheus text exposition of the platform, rendered by prom-client (its escaping of
 * label values and help text): runs by project and state, failed runs by code, outbound
 * messages by kind and status (gauges from Postgres, read with the column-limited sweeper
 * role), provider endpoints' breakers, queue depth per stage (BullMQ), stage latency
 * histograms in seconds, outcomes and failures by code (the counters the workers keep in
 * Redis), and, with `processMetrics`, the rendering process's own default metrics. A registry
 * is built per scrape from what is read, so no series outlives the row it counts.
 */
export async function renderMetrics({
  pool,
  redis,
  prefix,
  queues,
  processMetrics,
}: {
  pool: DatabasePool;
  redis: Redis;
  prefix: string;
  queues: Record<Stage, Queue>;
  processMetrics?: Registry;
}): Promise<string> {
  const register = new Registry();
  const gauge = <L extends string>(name: string, help: string, labelNames: readonly L[]) =>
    new Gauge<L>({ name, help, labelNames: [...labelNames], registers: [register] });
  const counter = <L extends string>(name: string, help: string, labelNames: readonly L[]) =>
    new Counter<L>({ name, help, labelNames: [...labelNames], registers: [register] });

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
  const runsGauge = gauge('awooop_runs', 'Runs by project and state.', ['project', 'state']);
  for (const r of runs) runsGauge.set({ project: r.projectId, state: r.state }, r.n);
  const failedGauge = gauge('awooop_runs_failed', 'Failed runs by project and failure code.', [
    'project',
    'code',
  ]);
  for (const r of failures) failedGauge.set({ project: r.projectId, code: r.code }, r.n);
  const outboundGauge = gauge(
    'awooop_outbound_messages',
    'Outbound ledger rows by project, kind (reply, status, failure, approval, alert) and status.',
    ['project', 'kind', 'status'],
  );
  for (const r of outbound)
    outboundGauge.set({ project: r.projectId, kind: r.kind, status: r.status }, r.n);
  const toolGauge = gauge(
    'awooop_tool_calls',
    'Tool calls the gateway saw, by project and status.',
    ['project', 'status'],
  );
  for (const r of toolCalls) toolGauge.set({ project: r.projectId, status: r.status }, r.n);
  const approvalGauge = gauge(
    'awooop_approvals',
    'Approvals by project and status (pending: waiting now).',
    ['project', 'status'],
  );
  for (const r of approvals) approvalGauge.set({ project: r.projectId, status: r.status }, r.n);

  const accountState = gauge(
    'awooop_channel_account_state',
    'Channel accounts by state (1 for the state the channels process last reported).',
    ['project', 'account', 'channel', 'state'],
  );
  const accountStopped = gauge(
    'awooop_channel_account_stopped',
    'Whether an operator has stopped the channel account (1) or wants it running (0).',
    ['project', 'account'],
  );
  const accountCounts = (
    [
      ['awooop_channel_inbound_total', 'Messages a channel account took in (new runs).', 'inbound'],
      ['awooop_channel_outbound_total', 'Messages a channel account sent.', 'outbound'],
      [
        'awooop_channel_errors_total',
        'Errors of a channel account (refused sends, failed starts).',
        'errors',
      ],
    ] as const
  ).map(
    ([name, help, field]) =>
      [
        counter(name, `${help} Flushed from Redis every few seconds.`, ['project', 'account']),
        field,
      ] as const,
  );
  for (const a of accounts) {
    for (const state of ACTUAL_STATES)
      accountState.set(
        { project: a.projectId, account: a.accountId, channel: a.channel, state },
        a.actual === state ? 1 : 0,
      );
    const account = { project: a.projectId, account: a.accountId };
    accountStopped.set(account, a.desired === 'stopped' ? 1 : 0);
    for (const [metric, field] of accountCounts) metric.inc(account, a[field]);
  }
  const alertGauge = gauge(
    'awooop_budget_alerts',
    'Budget alerts raised (one per period and limit), by project and limit.',
    ['project', 'limit'],
  );
  for (const r of alerts) alertGauge.set({ project: r.projectId, limit: r.limitName }, r.n);

  const breakerState = gauge(
    'awooop_provider_breaker_state',
    "A provider endpoint's circuit breaker: 0 closed, 1 half-open (probing), 2 open (skipped).",
    ['provider', 'endpoint'],
  );
  const breakerOpened = counter(
    'awooop_provider_breaker_opened_total',
    "How often a provider endpoint's breaker opened (an operator's reset sets it back to 0).",
    ['provider', 'endpoint'],
  );
  for (const b of breakers) {
    const endpoint = { provider: b.provider, endpoint: b.baseUrl };
    breakerState.set(endpoint, BREAKER_STATE_VALUE[b.state]);
    breakerOpened.inc(endpoint, b.openedCount);
  }

  const queueJobs = gauge('awooop_queue_jobs', 'Jobs per stage queue and job state.', [
    'stage',
    'state',
  ]);
  for (const [stage, queue] of Object.entries(queues)) {
    const counts = await queue.getJobCounts(
      'waiting',
      'active',
      'delayed',
      'failed',
      'prioritized',
    );
    for (const [state, n] of Object.entries(counts)) queueJobs.set({ stage, state }, n);
  }

  const durations = new CountedHistogram({
    name: 'awooop_stage_duration_seconds',
    help: 'Stage job duration in seconds.',
    buckets: STAGE_BUCKETS_MS.map((ms) => ms / 1000),
  });
  register.registerMetric(durations);
  const outcomes = counter(
    'awooop_stage_jobs_total',
    'Stage jobs by outcome (advanced, waited, retried, failed).',
    ['stage', 'outcome'],
  );
  const failed = counter(
    'awooop_stage_failures_total',
    'Stage jobs that failed for good (their run failed), by stage and error code.',
    ['stage', 'code'],
  );
  const waits = counter(
    'awooop_bulkhead_waits_total',
    'Stage jobs sent back to the queue because a share they need was full, by stage and share kind.',
    ['stage', 'share'],
  );
  for (const stage of Object.keys(queues)) {
    const h = await redis.hgetall(`${prefix}:metrics:stage:${stage}`);
    durations.load({
      stage,
      buckets: STAGE_BUCKETS_MS.map((le) => Number(h[`le_${le}`] ?? 0)),
      sumSeconds: Number(h.sum_ms ?? 0) / 1000,
      count: Number(h.count ?? 0),
    });
    for (const [field, n] of Object.entries(h)) {
      if (field.startsWith(OUTCOME_FIELD))
        outcomes.inc({ stage, outcome: field.slice(OUTCOME_FIELD.length) }, Number(n));
      if (field.startsWith(FAILURE_FIELD))
        failed.inc({ stage, code: field.slice(FAILURE_FIELD.length) }, Number(n));
      if (field.startsWith(BULKHEAD_FIELD))
        waits.inc({ stage, share: field.slice(BULKHEAD_FIELD.length) }, Number(n));
    }
  }

  const admission = counter(
    'awooop_admission_total',
    'Messages ingress refused (reason rate, project_backlog, platform_backlog) or absorbed past a limit (absorbed: written, run delayed), by project.',
    ['project', 'reason'],
  );
  const refusals = await redis.hgetall(admissionKeys.refusals(prefix));
  for (const [field, n] of Object.entries(refusals).sort()) {
    const [project = '', reason = ''] = field.split('|');
    admission.inc({ project, reason }, Number(n));
  }
  gauge('awooop_backlog_runs', 'Runs accepted and not finished, as admission counts them.', []).set(
    await redis.zcount(admissionKeys.allRuns(prefix), Date.now(), '+inf'),
  );

  const merged = processMetrics ? Registry.merge([processMetrics, register]) : register;
  return merged.metrics();
}
