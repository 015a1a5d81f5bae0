import { sql, type DatabasePool, type DatabaseTransactionConnection } from 'slonik';
import { z } from 'zod';
import { TenantIsolationError } from '../pipeline/errors.ts';
import { APP_ROLE } from './createDbPool.ts';

const ProjectIdShape = z.string().regex(/^[a-z][a-z0-9_-]{1,62}$/);

/**
 * Runs `handler` in one transaction that acts for `projectId`: the role is the tenant role
 * and `app.project_id` is set, so row-level security shows and accepts only that project's
 * rows, even for SQL that forgets its WHERE. Only callers open transactions; repositories
 * take the `tx` this passes.
 */
export async function withProject<T>(
  pool: DatabasePool,
  projectId: string,
  handler: (tx: DatabaseTransactionConnection) => Promise<T>,
): Promise<T> {
  if (!ProjectIdShape.safeParse(projectId).success || projectId === 'platform') {
    throw new TenantIsolationError(`not a project id: ${JSON.stringify(projectId).slice(0, 80)}`);
  }
  return pool.transaction(async (tx) => {
    await tx.query(sql.unsafe`
      SELECT set_config('role', ${APP_ROLE}, true), set_config('app.project_id', ${projectId}, true)`);
    return handler(tx);
  });
}
