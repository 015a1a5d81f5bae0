import { z } from 'zod';
import { readUsage, type UsageRow } from '../../db/budgets.ts';
import { withProject } from '../../db/withProject.ts';
import type { Context } from '../context.ts';

const Day = z
  .string()
  .regex(/^\d{4}-\d{2}-\d{2}$/, 'must be a day, YYYY-MM-DD')
  .refine(
    (d) =>
      !Number.isNaN(Date.parse(`${d}T00:00:00Z`)) &&
      new Date(`${d}T00:00:00Z`).toISOString().startsWith(d),
    'must be a real day',
  );

/**
 * What a usage report asks for, as the API's query and the CLI's flags give it: a grouping
 * (none: one total), and today, this month (UTC) or a range of days (both ends, inclusive,
 * at most 366 days).
 */
export const UsageQuery = z
  .strictObject({
    by: z.enum(['agent', 'model', 'day']).optional(),
    period: z.enum(['today', 'month']).optional(),
    from: Day.optional(),
    to: Day.optional(),
  })
  .superRefine((q, ctx) => {
    const range = q.from !== undefined || q.to !== undefined;
    if (range && q.period !== undefined)
      ctx.addIssue({ code: 'custom', path: ['period'], message: 'give either period or from/to' });
    if (q.from !== undefined && q.to === undefined)
      ctx.addIssue({ code: 'custom', path: ['to'], message: 'is needed with from' });
    if (q.to !== undefined && q.from === undefined)
      ctx.addIssue({ code: 'custom', path: ['from'], message: 'is needed with to' });
    if (q.from !== undefined && q.to !== undefined) {
      const days = (Date.parse(q.to) - Date.parse(q.from)) / 86_400_000;
      if (days < 0)
        ctx.addIssue({ code: 'custom', path: ['to'], message: 'must not be before from' });
      else if (days > 365)
        ctx.addIssue({
          code: 'custom',
          path: ['to'],
          message: 'must be at most 366 days after from',
        });
    }
  });
export type UsageQuery = z.infer<typeof UsageQuery>;

/** A usage report: the range, the total, and the rows of the grouping asked for. */
export type UsageReport = {
  project: string;
  from: string;
  to: string;
  by: 'total' | 'agent' | 'model' | 'day';
  total: Omit<UsageRow, 'key'>;
  rows: UsageRow[];
};

/**
 * A project's spend from its settled budget rows (tokens in and out, USD at the policy's
 * prices when the step ran, tool calls, runs), for the API and the CLI alike. Reads only.
 */
export async function reportUsage(
  ctx: Pick<Context, 'pool'> & { now: () => number },
  projectId: string,
  query: UsageQuery,
): Promise<UsageReport> {
  const today = new Date(ctx.now()).toISOString().slice(0, 10);
  const from = query.from ?? (query.period === 'month' ? `${today.slice(0, 7)}-01` : today);
  const to = query.to ?? today;
  const by = query.by ?? 'total';
  const { total, rows } = await withProject(ctx.pool, projectId, async (tx) => ({
    total: await readUsage(tx, { projectId, from, to, by: 'total' }),
    rows: by === 'total' ? [] : await readUsage(tx, { projectId, from, to, by }),
  }));
  const zero = { inputTokens: 0, outputTokens: 0, usd: 0, toolCalls: 0, runs: 0, unpricedSteps: 0 };
  const { key: _key, ...sum } = total[0] ?? { key: 'total', ...zero };
  return { project: projectId, from, to, by, total: sum, rows: [...rows] };
}
