// Regression (issue 15, item 1): project.budget and policies.*.budget were refused as "not
// supported yet"; now they are read, and apply refuses bad budget and price fields by name.
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import { budgetLimits } from '../../pipeline/budgets/createRunBudget.ts';
import { parseContract } from '../../pipeline/contracts/formatIssues.ts';
import { PolicyContract } from '../../pipeline/contracts/policyContract.ts';
import { ProjectContract } from '../../pipeline/contracts/projectContract.ts';
import { TenantFile } from '../../pipeline/contracts/tenantFile.ts';

const valid = parse(
  readFileSync(new URL('../fixtures/contracts/tenant/valid.yaml', import.meta.url), 'utf8'),
) as Record<string, Record<string, unknown>>;

const LOCAL_MODEL = {
  provider: 'openai_compatible',
  model: 'local-7b',
  baseUrl: 'http://127.0.0.1:11434/v1',
};

/** The fixture tenant with its project budget, default policy and prices replaced. */
function tenant({
  projectBudget,
  policy = {},
}: {
  projectBudget?: unknown;
  policy?: Record<string, unknown>;
}) {
  return {
    ...valid,
    project: { ...valid.project, ...(projectBudget ? { budget: projectBudget } : {}) },
    policies: { default: { modelRoute: { primary: LOCAL_MODEL }, ...policy } },
  };
}

/** The issues apply would print for `body`, or [] when it is accepted. */
function issuesOf(body: unknown): string[] {
  try {
    parseContract(TenantFile, body);
    return [];
  } catch (error) {
    return (error as { issues: string[] }).issues;
  }
}

describe('budget contracts', () => {
  it('accepts per-run, per-day and per-month budgets with prices', () => {
    expect(
      issuesOf(
        tenant({
          projectBudget: { dailyLimitUsd: 5, monthlyLimitUsd: 100, dailyLimitTokens: 1_000_000 },
          policy: {
            budget: {
              perRunTokens: 20_000,
              perRunUsd: 0.5,
              perRunToolCalls: 10,
              perRunWallMs: 60_000,
              dailyUsd: 2,
            },
            prices: { 'local-7b': { inputUsdPerMTok: 0.1, outputUsdPerMTok: 0.2 } },
          },
        }),
      ),
    ).toEqual([]);
  });

  it('refuses a model with no price under a money budget, naming the model field', () => {
    expect(issuesOf(tenant({ projectBudget: { monthlyLimitUsd: 100 } }))).toEqual([
      expect.stringMatching(
        /^policies\.default\.modelRoute\.primary\.model: model "local-7b" has no price in policies\.default\.prices/,
      ),
    ]);
    const fallback = tenant({
      policy: {
        modelRoute: { primary: { provider: 'echo' }, fallbacks: [LOCAL_MODEL] },
        budget: { perRunUsd: 1 },
      },
    });
    expect(issuesOf(fallback)).toEqual([
      expect.stringMatching(/^policies\.default\.modelRoute\.fallbacks\[0\]\.model: /),
    ]);
    // Tokens only: no price needed; echo never needs one.
    expect(issuesOf(tenant({ projectBudget: { dailyLimitTokens: 1000 } }))).toEqual([]);
    expect(
      issuesOf(
        tenant({
          projectBudget: { dailyLimitUsd: 1 },
          policy: { modelRoute: { primary: { provider: 'echo' } } },
        }),
      ),
    ).toEqual([]);
  });

  it('refuses bad budget and price fields by name', () => {
    const prices = { 'local-7b': { inputUsdPerMTok: 1, outputUsdPerMTok: 1 } };
    const cases: [unknown, Record<string, unknown>, RegExp][] = [
      [
        { dailyLimitUsd: 10, monthlyLimitUsd: 5 },
        {},
        /^project\.budget\.dailyLimitUsd: must not exceed monthlyLimitUsd/,
      ],
      [
        { dailyLimitTokens: 10, monthlyLimitTokens: 5 },
        {},
        /^project\.budget\.dailyLimitTokens: must not exceed/,
      ],
      [{ alertAtPercent: 50 }, {}, /^project\.budget: needs at least one of dailyLimitUsd/],
      [{ dailyLimitUsd: -1 }, { prices }, /^project\.budget\.dailyLimitUsd: /],
      [{ dailyTokens: 5 }, {}, /^project\.budget\.dailyTokens: unknown field/],
      [undefined, { budget: { perRunTokens: 0 } }, /^policies\.default\.budget\.perRunTokens: /],
      [
        undefined,
        { budget: { perRunToolCalls: 1.5 } },
        /^policies\.default\.budget\.perRunToolCalls: /,
      ],
      [undefined, { budget: { perRunWallMs: 5 } }, /^policies\.default\.budget\.perRunWallMs: /],
      [
        undefined,
        { budget: { perRunSeconds: 5 } },
        /^policies\.default\.budget\.perRunSeconds: unknown field/,
      ],
      [
        undefined,
        { prices: { 'local-7b': { inputUsdPerMTok: -1, outputUsdPerMTok: 1 } } },
        /^policies\.default\.prices\.local-7b\.inputUsdPerMTok: /,
      ],
      [
        undefined,
        { prices: { 'local-7b': { inputUsdPerMTok: 1 } } },
        /^policies\.default\.prices\.local-7b\.outputUsdPerMTok: /,
      ],
    ];
    for (const [projectBudget, policy, pattern] of cases) {
      const issues = issuesOf(tenant({ projectBudget, policy }));
      expect(issues, String(pattern)).toEqual(
        expect.arrayContaining([expect.stringMatching(pattern)]),
      );
      expect(issues.join('\n')).not.toContain('not supported yet');
    }
  });

  it('still reads budgets stored before they were enforced', () => {
    // The shapes apply refused, as a revision stored before the refusal holds them.
    expect(
      ProjectContract.parse({
        displayName: 'Old',
        budget: { currency: 'USD', monthlyLimitUsd: 200, dailyLimitUsd: 10, alertAtPercent: 80 },
        acl: { members: [] },
        defaultAgent: 'a',
      }).budget,
    ).toEqual({ currency: 'USD', monthlyLimitUsd: 200, dailyLimitUsd: 10, alertAtPercent: 80 });
    expect(
      PolicyContract.parse({
        modelRoute: { primary: { provider: 'echo' } },
        budget: { perRunUsd: 0.5, dailyUsd: 3, dailyTokens: 1000 },
      }).budget,
    ).toEqual({ perRunUsd: 0.5, dailyUsd: 3, dailyTokens: 1000 });
  });

  it("holds a run to the lower of the project's and the policy's day limits", () => {
    const project = ProjectContract.parse({
      displayName: 'P',
      budget: { dailyLimitUsd: 5, monthlyLimitUsd: 50, dailyLimitTokens: 100 },
      acl: { members: [] },
      defaultAgent: 'a',
    });
    const policy = PolicyContract.parse({
      modelRoute: { primary: { provider: 'echo' } },
      budget: { dailyUsd: 2, dailyTokens: 500, perRunToolCalls: 3 },
    });
    expect(budgetLimits(project, policy)).toEqual({
      perRunTokens: undefined,
      perRunUsd: undefined,
      perRunToolCalls: 3,
      dailyTokens: 100,
      dailyUsd: 2,
      monthlyTokens: undefined,
      monthlyUsd: 50,
    });
  });
});
