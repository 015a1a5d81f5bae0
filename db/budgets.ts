import { sql, type CommonQueryMethods } from 'slonik';
import { z } from 'zod';

/** The limits one reservation is checked against; an absent limit is not checked. */
export type BudgetLimits = {
  perRunTokens?: number | undefined;
  perRunUsd?: number | undefined;
  perRunToolCalls?: number | undefined;
  dailyTokens?: number | undefined;
  dailyUsd?: number | undefined;
  monthlyTokens?: number | undefined;
  monthlyUsd?: number | undefined;
};

/** One step's reservation: its key in the run, what it holds and against which limits. */
export type ReservationInput = {
  projectId: string;
  runId: string;
  /** `model:<step index>` or `tool:<model step>:<call index>`. */
  stepKey: string;
  kind: 'model' | 'tool';
  agent: string;
  /** `provider/model` for a model step, the tool id for a tool call. */
  subject: string;
  /** The UTC day it counts in, `YYYY-MM-DD`. */
  day: string;
  tokens: number;
  usd: number;
  unpriced: boolean;
  limits: BudgetLimits;
};

const ReserveRow = z.object({
  outcome: z.enum(['reserved', 'held', 'settled', 'released', 'exceeded']),
  limitName: z.string().nullable(),
});
/** What {@link reserveBudget} found: a new or reused hold, a final row, or the limit it passes. */
export type ReserveOutcome = z.infer<typeof ReserveRow>;

/**
 * Reserves one step (one statement: `budget_reserve`, migrations 0014 and 0015). A model step holds its
 * upper bound until settled; a tool call is recorded settled at once. Harmless twice: the
 * (run, step key) row admits one reservation, and a second call returns `held` (or the row's
 * final status) without touching the totals.
 */
export async function reserveBudget(
  db: CommonQueryMethods,
  input: ReservationInput,
): Promise<ReserveOutcome> {
  const l = input.limits;
  const num = (v: number | undefined) => v ?? null;
  return db.one(sql.type(ReserveRow)`
    SELECT outcome, limit_name AS "limitName" FROM budget_reserve(
      ${input.projectId}, ${input.runId}, ${input.stepKey}, ${input.kind}, ${input.agent},
      ${input.subject}, ${input.day}::date, ${Math.ceil(input.tokens)}::bigint,
      ${input.usd}::numeric, ${input.kind === 'tool'}, ${input.unpriced},
      ${num(l.perRunTokens)}::bigint, ${num(l.perRunUsd)}::numeric,
      ${num(l.perRunToolCalls)}::integer, ${num(l.dailyTokens)}::bigint,
      ${num(l.dailyUsd)}::numeric, ${num(l.monthlyTokens)}::bigint, ${num(l.monthlyUsd)}::numeric)`);
}

const SettledRow = z.object({ period: z.string(), tokens: z.number(), usd: z.number() });
/** A period's total (spent and still held) after a settle. */
export type PeriodTotal = z.infer<typeof SettledRow>;

/**
 * Settles a model step from the provider's usage: the hold leaves the day's and month's
 * reserved totals and the actual spend enters their spent totals. Returns those periods'
 * totals, or none when the step was not held (already settled or released: a second call
 * changes nothing).
 */
export async function settleBudget(
  db: CommonQueryMethods,
  input: {
    projectId: string;
    runId: string;
    stepKey: string;
    subject: string;
    inputTokens: number;
    outputTokens: number;
    usd: number;
    unpriced: boolean;
  },
): Promise<readonly PeriodTotal[]> {
  return db.any(sql.type(SettledRow)`
    SELECT out_period AS period, out_tokens::float8 AS tokens, out_usd::float8 AS usd
      FROM budget_settle(${input.projectId}, ${input.runId}, ${input.stepKey}, ${input.subject},
                         ${Math.max(0, Math.round(input.inputTokens))}::bigint,
                         ${Math.max(0, Math.round(input.outputTokens))}::bigint,
                         ${input.usd}::numeric, ${input.unpriced})`);
}

/**
 * Gives back the holds a run still has (it ended before those steps settled). Harmless
 * twice: a released row is not released again.
 */
export async function releaseRunBudget(
  db: CommonQueryMethods,
  run: { projectId: string; runId: string },
): Promise<number> {
  return db.oneFirst(sql.type(z.object({ n: z.number() }))`
    SELECT budget_release_run(${run.projectId}, ${run.runId}) AS n`);
}

/**
 * Records that a period's spend passed the alert share of one limit. Returns true only for
 * the first record of that (period, limit): the key admits one row, so owners are told once.
 */
export async function recordBudgetAlert(
  db: CommonQueryMethods,
  input: {
    projectId: string;
    period: string;
    limitName: string;
    percent: number;
    spent: number;
    limit: number;
  },
): Promise<boolean> {
  const row = await db.maybeOne(sql.type(z.object({ period: z.string() }))`
    INSERT INTO budget_alerts (project_id, period, limit_name, percent, spent, limit_value)
    VALUES (${input.projectId}, ${input.period}, ${input.limitName}, ${input.percent},
            ${input.spent}::numeric, ${input.limit}::numeric)
    ON CONFLICT DO NOTHING RETURNING period`);
  return row !== null;
}

const UsageRow = z.object({
  key: z.string(),
  inputTokens: z.number(),
  outputTokens: z.number(),
  usd: z.number(),
  toolCalls: z.number(),
  runs: z.number(),
  unpricedSteps: z.number(),
});
/** Spend over a range, for one group (an agent, a model, a day) or all (`key` = `total`). */
export type UsageRow = z.infer<typeof UsageRow>;

/** How {@link readUsage} groups its rows. */
export type UsageGrouping = 'total' | 'agent' | 'model' | 'day';

/**
 * A project's spend between two UTC days (inclusive), from the settled steps: tokens in and
 * out, USD, tool calls, runs, grouped by agent, model (tool calls count under no model) or
 * day. Holds still open are not spend and are left out.
 */
export async function readUsage(
  db: CommonQueryMethods,
  input: { projectId: string; from: string; to: string; by: UsageGrouping },
): Promise<readonly UsageRow[]> {
  const key = {
    total: sql.fragment`'total'`,
    agent: sql.fragment`agent`,
    model: sql.fragment`CASE WHEN kind = 'model' THEN subject ELSE '(tools)' END`,
    day: sql.fragment`to_char(day, 'YYYY-MM-DD')`,
  }[input.by];
  return db.any(sql.type(UsageRow)`
    SELECT ${key} AS key,
           coalesce(sum(input_tokens), 0)::float8 AS "inputTokens",
           coalesce(sum(output_tokens), 0)::float8 AS "outputTokens",
           coalesce(sum(usd), 0)::float8 AS usd,
           count(*) FILTER (WHERE kind = 'tool')::float8 AS "toolCalls",
           count(DISTINCT run_id)::float8 AS runs,
           count(*) FILTER (WHERE unpriced)::float8 AS "unpricedSteps"
      FROM budget_reservations
     WHERE project_id = ${input.projectId} AND status = 'settled'
       AND day BETWEEN ${input.from}::date AND ${input.to}::date
     GROUP BY 1 ORDER BY 1`);
}
