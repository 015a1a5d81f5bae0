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

const RuntimeFlowsRow = z.object({
  flows: z.array(
    z.object({
      name: z.string(),
      mode: FlowStateRow.shape.mode,
      canary: z.record(z.string(), z.unknown()).optional(),
    }),
  ),
});
const ClearedRow = z.object({ flow: z.string(), mode: z.string() });

/** One flow whose stored mode a sync changed; `mode` null: the flow was cleared. */
export type FlowChange = { flow: string; mode: string | null; previousMode: string | null };

/**
 * Makes the project's flow modes what the runtime revision `revisionId` says: each of its
 * flows gets its mode and canary settings, and a flow it no longer has loses its mode (a run
 * on it then fails `MODE_NOT_CONFIGURED` instead of speaking in a mode nobody chose). Every
 * path that moves the runtime pointer calls it in the pointer's own transaction, so the mode
 * policy reads is always the active revision's. Harmless twice: only a difference is written.
 */
export async function syncFlowModes(
  db: CommonQueryMethods,
  s: { projectId: string; revisionId: string; actor: string },
): Promise<FlowChange[]> {
  const { flows } = await db.one(sql.type(RuntimeFlowsRow)`
    SELECT body->'flows' AS flows FROM contract_revisions
     WHERE project_id = ${s.projectId} AND revision_id = ${s.revisionId} AND kind = 'runtime'
       AND status = 'published'`);
  const changes: FlowChange[] = [];
  for (const flow of flows) {
    const state = await setMigrationState(db, {
      projectId: s.projectId,
      flow: flow.name,
      mode: flow.mode,
      canary: flow.canary ?? {},
      actor: s.actor,
    });
    if (state.changed)
      changes.push({ flow: flow.name, mode: flow.mode, previousMode: state.previousMode });
  }
  const cleared = await db.any(sql.type(ClearedRow)`
    WITH gone AS (
      DELETE FROM project_migration_state
       WHERE project_id = ${s.projectId}
         AND flow <> ALL(${sql.array(
           flows.map((f) => f.name),
           'text',
         )})
      RETURNING flow, mode
    ),
    audit AS (
      INSERT INTO audit_events (project_id, chain, actor, action, subject, detail)
      SELECT ${s.projectId}, 'flow:' || gone.flow, ${s.actor}, 'flow.mode.clear', 'flow/' || gone.flow,
             jsonb_build_object('previous_mode', gone.mode, 'revision_id', ${s.revisionId}::text)
        FROM gone
    )
    SELECT flow, mode FROM gone ORDER BY flow`);
  for (const c of cleared) changes.push({ flow: c.flow, mode: null, previousMode: c.mode });
  return changes;
}
