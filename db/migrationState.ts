import { sql, type CommonQueryMethods } from 'slonik';
import { z } from 'zod';
import type { MigrationMode } from '../pipeline/contracts/common.ts';

// Row schemas built once at load: zod compiles a schema on first use, so one built per
// call was paid on every query.
const PreviousModeRow = z.object({ previousMode: z.string().nullable() });
const FlowStateRow = z.object({
  mode: z.enum(['shadow', 'canary', 'read_only', 'suggest', 'auto_remediate']),
  canary: z.record(z.string(), z.unknown()),
});

/**
 * Sets one flow's migration mode. Writes (and audits) only when the mode or the canary
 * settings differ from what is stored, so applying the same runtime contract twice writes
 * nothing the second time. Returns the previous mode when it changed.
 */
export async function setMigrationState(
  db: CommonQueryMethods,
  s: {
    projectId: string;
    flow: string;
    mode: MigrationMode;
    canary: Record<string, unknown>;
    actor: string;
  },
): Promise<{ changed: boolean; previousMode: string | null }> {
  const row = await db.maybeOne(sql.type(PreviousModeRow)`
    WITH prev AS (
      SELECT mode FROM project_migration_state WHERE project_id = ${s.projectId} AND flow = ${s.flow}
    ),
    up AS (
      INSERT INTO project_migration_state (project_id, flow, mode, canary, updated_by)
      VALUES (${s.projectId}, ${s.flow}, ${s.mode}, ${sql.jsonb(s.canary as never)}, ${s.actor})
      ON CONFLICT (project_id, flow) DO UPDATE
        SET mode = EXCLUDED.mode, canary = EXCLUDED.canary, updated_by = EXCLUDED.updated_by,
            updated_at = now()
        WHERE (project_migration_state.mode, project_migration_state.canary)
              IS DISTINCT FROM (EXCLUDED.mode, EXCLUDED.canary)
      RETURNING mode
    ),
    audit AS (
      INSERT INTO audit_events (project_id, chain, actor, action, subject, detail)
      SELECT ${s.projectId}, ${`flow:${s.flow}`}, ${s.actor}, 'flow.mode.set', ${`flow/${s.flow}`},
             jsonb_build_object('mode', up.mode, 'previous_mode', (SELECT mode FROM prev),
                                'canary', ${sql.jsonb(s.canary as never)})
        FROM up
    )
    SELECT (SELECT mode FROM prev) AS "previousMode" FROM up`);
  return { changed: row !== null, previousMode: row?.previousMode ?? null };
}

/** One flow's migration mode and canary settings, or null when the flow was never applied. */
export async function readMigrationState(
  db: CommonQueryMethods,
  projectId: string,
  flow: string,
): Promise<{ mode: MigrationMode; canary: Record<string, unknown> } | null> {
  return db.maybeOne(
    sql.type(
      FlowStateRow,
    )`SELECT mode, canary FROM project_migration_state WHERE project_id = ${projectId} AND flow = ${flow}`,
  );
}
