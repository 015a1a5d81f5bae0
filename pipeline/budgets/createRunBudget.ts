import type { CommonQueryMethods } from 'slonik';
import { appendAudit } from '../../db/auditEvents.ts';
import {
  recordBudgetAlert,
  reserveBudget,
  settleBudget,
  type BudgetLimits,
  type PeriodTotal,
} from '../../db/budgets.ts';
import type { Run } from '../../db/runs.ts';
import { withProject } from '../../db/withProject.ts';
import type { ModelTarget, PolicyContract } from '../contracts/policyContract.ts';
import type { ProjectContract } from '../contracts/projectContract.ts';
import { queueOwnerAlert } from '../alerts/ownerAlerts.ts';
import type { Context } from '../context.ts';
import type { StageContext } from '../StageContext.ts';
import { NonRetryableError } from '../errors.ts';

/**
 * Prompt bytes counted as one token when a step's prompt is priced before it is sent. Common
 * tokenizers average about four bytes a token on English text; three keeps the hold above
 * what a provider later reports in nearly every case, so a hold is an upper bound.
 */
export const PROMPT_BYTES_PER_TOKEN = 3;

/** The most tokens the offline `echo` model answers with beyond its prompt's. */
const ECHO_EXTRA_TOKENS = 16;

/** What a run's budget keeper does around each spend: reserve before, settle after. */
export type RunBudget = {
  /**
   * Reserves a model step before it is sent: the prompt's size and the route's largest
   * `maxOutputTokens`, at the route's highest price. Throws `BUDGET_EXCEEDED` when a limit
   * would pass; a step reserved before (a retry, a resume) reuses its hold.
   */
  reserveModelStep(stepIndex: number, promptBytes: number): Promise<void>;
  /**
   * Settles a model step from the provider's usage, in the transaction that checkpoints it,
   * and raises the owners' alert the first time a period passes its alert share.
   */
  settleModelStep(
    tx: CommonQueryMethods,
    stepIndex: number,
    answered: { provider: string; model: string; inputTokens: number; outputTokens: number },
  ): Promise<void>;
  /** Counts a tool call against the run's limit before it is made (once per call). */
  reserveToolCall(modelStep: number, callIndex: number, toolId: string): Promise<void>;
  /** Milliseconds left of the run's wall-time budget, or null without one. */
  wallMsLeft(): number | null;
  /** Throws `BUDGET_EXCEEDED` when the wall-time budget has run out. */
  checkWallTime(): void;
};

/** The price of a target under a policy; `echo` is free, an unlisted model is null. */
export function priceOf(
  policy: PolicyContract,
  target: { provider: string; model: string },
): { inputUsdPerMTok: number; outputUsdPerMTok: number } | null {
  if (target.provider === 'echo') return { inputUsdPerMTok: 0, outputUsdPerMTok: 0 };
  return policy.prices?.[target.model] ?? null;
}

/** The limits a run of this policy in this project is held to. */
export function budgetLimits(project: ProjectContract, policy: PolicyContract): BudgetLimits {
  const p = project.budget;
  const b = policy.budget;
  const lower = (a: number | undefined, c: number | undefined) =>
    a === undefined ? c : c === undefined ? a : Math.min(a, c);
  return {
    perRunTokens: b?.perRunTokens,
    perRunUsd: b?.perRunUsd,
    perRunToolCalls: b?.perRunToolCalls,
    dailyTokens: lower(p?.dailyLimitTokens, b?.dailyTokens),
    dailyUsd: lower(p?.dailyLimitUsd, b?.dailyUsd),
    monthlyTokens: p?.monthlyLimitTokens,
    monthlyUsd: p?.monthlyLimitUsd,
  };
}

/**
 * A run's budget keeper: every model step and tool call of the run reserves through it
 * before it is made, keyed by its place in the run (`model:<step>`, `tool:<step>:<call>`),
 * so a retried or resumed step finds its own reservation instead of making a second. A hold
 * a dead worker left is reused by the next try of the same step and settled by it; a run
 * that ends first gives it back ({@link releaseRunBudget}, from `failRun`). Periods are UTC.
 */
export function createRunBudget(
  ctx: Context & { actor: string; now: () => number } & Pick<
      StageContext,
      'contracts' | 'channels'
    >,
  { run, project, policy }: { run: Run; project: ProjectContract; policy: PolicyContract },
): RunBudget {
  const limits = budgetLimits(project, policy);
  const agent = run.agent ?? '';
  const targets: ModelTarget[] = [policy.modelRoute.primary, ...policy.modelRoute.fallbacks];
  const primary = targets[0]!;
  const wallMs = policy.budget?.perRunWallMs ?? null;
  const day = () => new Date(ctx.now()).toISOString().slice(0, 10);

  const exceeded = (limitName: string, what: string): never => {
    throw new NonRetryableError(
      'BUDGET_EXCEEDED',
      `${what} would pass the budget's ${limitName}; the run stops here`,
      { detail: { limit: limitName } },
    );
  };
  const wallMsLeft = () => (wallMs === null ? null : run.createdAt + wallMs - ctx.now());
  const checkWallTime = () => {
    const left = wallMsLeft();
    if (left !== null && left <= 0) exceeded('perRunWallMs', 'another step');
  };

  return {
    wallMsLeft,
    checkWallTime,

    async reserveModelStep(stepIndex, promptBytes) {
      checkWallTime();
      const promptTokens = Math.ceil(promptBytes / PROMPT_BYTES_PER_TOKEN);
      let tokens = 0;
      let usd = 0;
      let unpriced = false;
      for (const target of targets) {
        const out =
          target.provider === 'echo' ? promptTokens + ECHO_EXTRA_TOKENS : target.maxOutputTokens;
        tokens = Math.max(tokens, promptTokens + out);
        const price = priceOf(policy, target);
        if (!price) unpriced = true;
        else
          usd = Math.max(
            usd,
            (promptTokens * price.inputUsdPerMTok + out * price.outputUsdPerMTok) / 1e6,
          );
      }
      const outcome = await withProject(ctx.pool, run.projectId, (tx) =>
        reserveBudget(tx, {
          projectId: run.projectId,
          runId: run.runId,
          stepKey: `model:${stepIndex}`,
          kind: 'model',
          agent,
          subject: `${primary.provider}/${primary.model}`,
          day: day(),
          tokens,
          usd,
          unpriced,
          limits,
        }),
      );
      if (outcome.outcome === 'exceeded') exceeded(outcome.limitName ?? 'limit', 'this model step');
    },

    async settleModelStep(tx, stepIndex, answered) {
      const price = priceOf(policy, answered);
      const usd = price
        ? (answered.inputTokens * price.inputUsdPerMTok +
            answered.outputTokens * price.outputUsdPerMTok) /
          1e6
        : 0;
      const totals = await settleBudget(tx, {
        projectId: run.projectId,
        runId: run.runId,
        stepKey: `model:${stepIndex}`,
        subject: `${answered.provider}/${answered.model}`,
        inputTokens: answered.inputTokens,
        outputTokens: answered.outputTokens,
        usd,
        unpriced: price === null,
      });
      await alertOwners(ctx, tx, run, project, totals);
    },

    async reserveToolCall(modelStep, callIndex, toolId) {
      checkWallTime();
      const outcome = await withProject(ctx.pool, run.projectId, (tx) =>
        reserveBudget(tx, {
          projectId: run.projectId,
          runId: run.runId,
          stepKey: `tool:${modelStep}:${callIndex}`,
          kind: 'tool',
          agent,
          subject: toolId,
          day: day(),
          tokens: 0,
          usd: 0,
          unpriced: false,
          limits,
        }),
      );
      if (outcome.outcome === 'exceeded')
        exceeded(outcome.limitName ?? 'limit', `tool call ${toolId}`);
    },
  };
}

/**
 * Tells the project's owners, once per period and limit, that spend passed the alert share:
 * a `budget_alerts` row (its key admits one), a `budget.alert` audit row, a log line, and an
 * `alert` row of the outbound ledger per owner (an admin on the approvals account), which the
 * run's deliver stage sends; the metrics count the rows. Harmless twice: only the first
 * insert of the key goes on.
 */
async function alertOwners(
  ctx: Context & { actor: string } & Pick<StageContext, 'contracts' | 'channels'>,
  tx: CommonQueryMethods,
  run: Run,
  project: ProjectContract,
  totals: readonly PeriodTotal[],
): Promise<void> {
  const b = project.budget;
  if (!b) return;
  for (const total of totals) {
    const daily = total.period.startsWith('day:');
    const checks = [
      {
        name: daily ? 'dailyLimitUsd' : 'monthlyLimitUsd',
        limit: daily ? b.dailyLimitUsd : b.monthlyLimitUsd,
        spent: total.usd,
      },
      {
        name: daily ? 'dailyLimitTokens' : 'monthlyLimitTokens',
        limit: daily ? b.dailyLimitTokens : b.monthlyLimitTokens,
        spent: total.tokens,
      },
    ];
    for (const { name, limit, spent } of checks) {
      if (limit === undefined || spent < (limit * b.alertAtPercent) / 100) continue;
      const first = await recordBudgetAlert(tx, {
        projectId: run.projectId,
        period: total.period,
        limitName: name,
        percent: b.alertAtPercent,
        spent,
        limit,
      });
      if (!first) continue;
      await appendAudit(tx, {
        projectId: run.projectId,
        chain: `budget:${total.period}`,
        actor: ctx.actor,
        action: 'budget.alert',
        subject: name,
        detail: {
          period: total.period,
          limit: name,
          percent: b.alertAtPercent,
          spent,
          limit_value: limit,
        },
        traceId: run.traceId,
        runId: run.runId,
      });
      ctx.logger.warn(
        {
          projectId: run.projectId,
          runId: run.runId,
          period: total.period,
          limit: name,
          spent,
          limitValue: limit,
        },
        'budget alert: spend passed the alert share',
      );
      await queueOwnerAlert(ctx, tx, run, project, {
        alertKey: `${total.period}/${name}`,
        text: alertText(run.projectId, total.period, name, b.alertAtPercent, spent, limit),
      });
    }
  }
}

/** What an owner is told: the project, the period, the limit, and the spend against it. */
function alertText(
  projectId: string,
  period: string,
  limitName: string,
  percent: number,
  spent: number,
  limit: number,
): string {
  const money = limitName.endsWith('Usd');
  const amount = (v: number) => (money ? `${v.toFixed(4)} USD` : `${Math.round(v)} tokens`);
  const [kind, when] = period.split(':');
  return [
    'Budget alert',
    '',
    `Project: ${projectId}`,
    `${kind === 'day' ? 'Day' : 'Month'}: ${when ?? period}`,
    `Spend passed ${percent}% of ${limitName}: ${amount(spent)} of ${amount(limit)}`,
    '',
    `See it with: awooop usage --project ${projectId}`,
  ].join('\n');
}
