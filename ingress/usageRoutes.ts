import Router from '@koa/router';
import type { DatabasePool } from 'slonik';
import { formatIssues } from '../pipeline/contracts/formatIssues.ts';
import { reportUsage, UsageQuery } from '../pipeline/budgets/reportUsage.ts';
import { ContractViolationError } from '../pipeline/errors.ts';
import { apiAuth, type ApiState } from './apiAuth.ts';
import type { AppState } from './AppState.ts';

/**
 * `GET /v1/projects/:projectId/usage?by=agent|model|day&period=today|month&from=&to=`: the
 * project's spend (tokens in and out, USD, tool calls, runs), for keys the permission table
 * grants `usage.read` (viewer, operator, admin; any other is 403). A bad query is 400 `QUERY_INVALID` naming the parameter.
 * Reads only, so a repeat is harmless.
 */
export function usageRoutes(deps: { pool: DatabasePool; now?: () => number }): Router<AppState> {
  const router = new Router<AppState>({ prefix: '/v1/projects/:projectId' });
  const read = apiAuth({ pool: deps.pool, action: 'usage.read' });
  const now = deps.now ?? Date.now;

  router.get<ApiState>('/usage', read, async (ctx) => {
    const parsed = UsageQuery.safeParse(ctx.query);
    if (!parsed.success)
      throw new ContractViolationError(formatIssues(parsed.error), undefined, {
        code: 'QUERY_INVALID',
      });
    ctx.body = await reportUsage({ pool: deps.pool, now }, ctx.params.projectId!, parsed.data);
  });
  return router;
}
