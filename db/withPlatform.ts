import { sql, type DatabasePool, type DatabaseTransactionConnection } from 'slonik';
import { TenantIsolationError } from '../pipeline/errors.ts';
import { PLATFORM_ROLE } from './createDbPool.ts';
import { appendAudit } from './auditEvents.ts';
import { sqlState } from './sqlState.ts';

/** Who enters the platform role, and why: both go into the audit trail. */
export type PlatformAccess = { actor: string; reason: string; traceId?: string };

/**
 * Runs `handler` in one transaction with the cross-tenant role. The entry itself is written
 * to the platform's own audit chain in the same transaction, so no platform read or write
 * happens without a record of who asked and why. Only a pool connected as the platform login
 * (the CLI's) can enter the role; on the runtime's pool this refuses.
 */
export async function withPlatform<T>(
  pool: DatabasePool,
  access: PlatformAccess,
  handler: (tx: DatabaseTransactionConnection) => Promise<T>,
): Promise<T> {
  return pool.transaction(async (tx) => {
    try {
      await tx.query(sql.unsafe`
        SELECT set_config('role', ${PLATFORM_ROLE}, true), set_config('app.project_id', '', true)`);
    } catch (error) {
      // 42501: this connection's login role is not a member of the platform role
      if (sqlState(error) !== '42501') throw error;
      throw new TenantIsolationError(
        'this connection cannot enter the platform role: withPlatform needs the platform login (AWOOOP_DB_PLATFORM_URL)',
      );
    }
    await appendAudit(tx, {
      projectId: 'platform',
      chain: 'platform:access',
      actor: access.actor,
      action: 'platform.access',
      subject: 'platform',
      detail: { reason: access.reason },
      traceId: access.traceId ?? null,
    });
    return handler(tx);
  });
}
