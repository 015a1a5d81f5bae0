import type pg from 'pg';
import type { SystemKind } from './startSystem.ts';

/** What the database says about one round's runs. */
export type RoundFigures = {
  runs: number;
  failed: number;
  /** Failure codes of failed runs, with counts. */
  failures: Record<string, number>;
  /** Runs finished per second: runs / (last finish - first acceptance). */
  runsPerS: number;
  p50Ms: number;
  p99Ms: number;
  /** Per stage (hop), the p50 of the time from the previous stage's commit to this one's. */
  stageP50Ms: Record<string, number>;
};

const TABLES = {
  pipeline: { runs: 'runs', seq: 'run_seq', key: 'run_id' },
  baseline: { runs: 'bench_runs', seq: 'seq', key: 'id' },
} as const;

/** The newest run's sequence number: runs after it belong to the round about to start. */
export async function runMark(db: pg.Client, kind: SystemKind): Promise<number> {
  const t = TABLES[kind];
  const { rows } = await db.query<{ mark: string }>(
    `SELECT coalesce(max(${t.seq}), 0) AS mark FROM ${t.runs}`,
  );
  return Number(rows[0]!.mark);
}

/** How many runs after `mark` are not finished yet (a partial index makes this cheap). */
export async function openRuns(db: pg.Client, kind: SystemKind, mark: number): Promise<number> {
  const { rows } = await db.query<{ n: string }>(
    kind === 'pipeline'
      ? `SELECT count(*) AS n FROM runs WHERE state NOT IN ('COMPLETED', 'FAILED') AND run_seq > $1`
      : `SELECT count(*) AS n FROM bench_runs WHERE completed_at IS NULL AND seq > $1`,
    [mark],
  );
  return Number(rows[0]!.n);
}

const ms = (expr: string) => `extract(epoch FROM ${expr}) * 1000`;

/**
 * Throughput and latency of the runs after `mark`, from the database's own timestamps:
 * latency is `completed_at - created_at` (the ingress transaction's start to the final
 * transition's), throughput is runs over the time from the first acceptance to the last finish.
 */
export async function measureRuns(
  db: pg.Client,
  kind: SystemKind,
  mark: number,
): Promise<RoundFigures> {
  const t = TABLES[kind];
  const failedExpr = kind === 'pipeline' ? `state = 'FAILED'` : 'false';
  const { rows } = await db.query<{ n: string; failed: string; span: number; q: number[] | null }>(
    `SELECT count(*) AS n, count(*) FILTER (WHERE ${failedExpr}) AS failed,
            ${ms('max(completed_at) - min(created_at)')}::float8 AS span,
            percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP
              (ORDER BY ${ms('completed_at - created_at')}) AS q
       FROM ${t.runs} WHERE ${t.seq} > $1 AND completed_at IS NOT NULL`,
    [mark],
  );
  const row = rows[0]!;
  const runs = Number(row.n);
  const failures: Record<string, number> = {};
  if (kind === 'pipeline') {
    const { rows: codes } = await db.query<{ code: string; n: string }>(
      `SELECT failure_code AS code, count(*) AS n FROM runs
        WHERE run_seq > $1 AND state = 'FAILED' GROUP BY failure_code`,
      [mark],
    );
    for (const c of codes) failures[c.code] = Number(c.n);
  }
  return {
    runs,
    failed: Number(row.failed),
    failures,
    runsPerS: row.span > 0 ? (runs / row.span) * 1000 : Number.NaN,
    p50Ms: row.q?.[0] ?? Number.NaN,
    p99Ms: row.q?.[1] ?? Number.NaN,
    stageP50Ms: await stageP50s(db, kind, mark),
  };
}

async function stageP50s(
  db: pg.Client,
  kind: SystemKind,
  mark: number,
): Promise<Record<string, number>> {
  // Each step's commit-side timestamp minus the one before it, per run, in order.
  const steps =
    kind === 'pipeline'
      ? `SELECT t.stage AS step, t.transition_id AS ord, t.run_id, t.at
           FROM run_transitions t JOIN runs r USING (run_id) WHERE r.run_seq > $1`
      : `SELECT 'hop' || h.hop AS step, h.hop_id AS ord, h.run_id, h.at
           FROM bench_hops h JOIN bench_runs r ON r.id = h.run_id WHERE r.seq > $1
         UNION ALL
         SELECT 'ingress', 0, id, created_at FROM bench_runs WHERE seq > $1`;
  const { rows } = await db.query<{ step: string; p50: number }>(
    `SELECT step, percentile_cont(0.5) WITHIN GROUP (ORDER BY gap) AS p50
       FROM (SELECT step, ${ms('at - lag(at) OVER (PARTITION BY run_id ORDER BY ord)')} AS gap
               FROM (${steps}) s) g
      WHERE gap IS NOT NULL GROUP BY step`,
    [mark],
  );
  const order = (s: string) => (s.startsWith('hop') ? Number(s.slice(3)) : stageOrder(s));
  return Object.fromEntries(
    rows.sort((a, b) => order(a.step) - order(b.step)).map((r) => [r.step, r.p50]),
  );
}

function stageOrder(stage: string): number {
  return ['ingress', 'resolve', 'policy', 'execute', 'sanitize', 'deliver'].indexOf(stage);
}
