import { sql, type DatabasePool, type DatabaseTransactionConnection } from 'slonik';
import { SWEEPER_ROLE } from './createDbPool.ts';

/**
 * Runs `handler` in one transaction with the sweeper's role, which reads a few columns (ids,
 * states, statuses, times) of every project's rows and writes nothing. Only a pool connected
 * as the sweeper's login (the sweeper's, the web's `/metrics` pool) can enter it; on any other,
 * Postgres refuses the role. Repositories take the `tx` this passes.
 */
export async function withSweeper<T>(
  pool: DatabasePool,
  handler: (tx: DatabaseTransactionConnection) => Promise<T>,
): Promise<T> {
  return pool.transaction(async (tx) => {
    await tx.query(sql.unsafe`SELECT set_config('role', ${SWEEPER_ROLE}, true)`);
    return handler(tx);
  });
}
