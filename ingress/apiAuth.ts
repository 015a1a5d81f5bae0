import type { Middleware } from 'koa';
import type { DatabasePool } from 'slonik';
import { findApiKey, type ApiKeyRole } from '../db/apiKeys.ts';
import { projectExists } from '../db/projects.ts';
import { withProject } from '../db/withProject.ts';
import { ProjectId } from '../pipeline/contracts/common.ts';
import { authorize, type Action } from '../pipeline/control/permissions.ts';
import { AppError, NotFoundError } from '../pipeline/errors.ts';

/** The caller an API request acts as, set on `ctx.state.apiKey`. */
export type ApiCaller = { keyId: string; name: string; roles: readonly ApiKeyRole[] };

/** `ctx.state` behind `apiAuth`: the caller it authenticated. */
export type ApiState = {
  /** The project API key the request authenticated with. */
  apiKey: ApiCaller;
};

/**
 * Bearer auth for `/v1/projects/:projectId/...`: the key must be a live key of that project
 * (compared by SHA-256; the key itself is never stored) and hold a role that grants `action`
 * in the permission table (`pipeline/control/permissions.ts`). An unknown project is 404, a
 * missing or wrong key 401, a key without such a role 403 `FORBIDDEN` naming the roles.
 */
export function apiAuth({
  pool,
  action,
}: {
  pool: DatabasePool;
  /** What the route does, as the permission table names it. */
  action: Action;
}): Middleware<ApiState> {
  return async function authenticate(ctx, next) {
    const projectId = String((ctx.params as Record<string, string> | undefined)?.projectId ?? '');
    if (!ProjectId.safeParse(projectId).success) throw projectNotFound(projectId);
    const match = /^Bearer\s+(\S+)$/i.exec(ctx.get('authorization'));
    const caller = await withProject(pool, projectId, async (tx) => {
      const key = match ? await findApiKey(tx, projectId, match[1]!) : null;
      if (key) return key;
      if (!(await projectExists(tx, projectId))) throw projectNotFound(projectId);
      return null;
    });
    if (!caller) {
      ctx.set('WWW-Authenticate', 'Bearer');
      throw new AppError(
        'UNAUTHORIZED',
        'a valid project API key is required (Authorization: Bearer ...)',
        { status: 401 },
      );
    }
    authorize(caller.roles, action);
    ctx.state.apiKey = caller;
    await next();
  };
}

function projectNotFound(projectId: string) {
  return new NotFoundError('PROJECT_NOT_FOUND', `no project "${projectId.slice(0, 63)}"`);
}
