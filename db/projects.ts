import { sql, type CommonQueryMethods } from 'slonik';
import { z } from 'zod';

const Project = z.object({
  projectId: z.string(),
  displayName: z.string(),
  status: z.enum(['active', 'suspended']),
  createdAt: z.number(),
});
export type Project = z.infer<typeof Project>;

/**
 * Creates the project row or updates its display name. Returns whether the row was created.
 * Inside `withProject(pool, id)` row-level security admits only the row whose id is `id`.
 * A second run with the same name writes nothing (the update's WHERE finds no difference).
 */
export async function upsertProject(
  db: CommonQueryMethods,
  { projectId, displayName, actor }: { projectId: string; displayName: string; actor: string },
): Promise<{ created: boolean; changed: boolean }> {
  const row = await db.maybeOne(sql.type(z.object({ created: z.boolean() }))`
    INSERT INTO projects (project_id, display_name, created_by)
    VALUES (${projectId}, ${displayName}, ${actor})
    ON CONFLICT (project_id) DO UPDATE
      SET display_name = EXCLUDED.display_name, updated_at = now()
      WHERE projects.display_name IS DISTINCT FROM EXCLUDED.display_name
    RETURNING (xmax = 0) AS created`);
  return { created: row?.created ?? false, changed: row !== null };
}

/** Every project visible to this transaction (all of them only under `withPlatform`). */
export async function listProjects(db: CommonQueryMethods): Promise<readonly Project[]> {
  return db.any(sql.type(Project)`
    SELECT project_id AS "projectId", display_name AS "displayName", status, created_at AS "createdAt"
      FROM projects ORDER BY project_id`);
}

const ProjectIdRow = z.object({ projectId: z.string() });

/** Whether the project exists (and is visible to this transaction). */
export async function projectExists(db: CommonQueryMethods, projectId: string): Promise<boolean> {
  const row = await db.maybeOne(sql.type(ProjectIdRow)`
    SELECT project_id AS "projectId" FROM projects WHERE project_id = ${projectId}`);
  return row !== null;
}
