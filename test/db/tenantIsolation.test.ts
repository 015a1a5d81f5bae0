import { sql } from 'slonik';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { publishRevision, saveDraft } from '../../db/contractRevisions.ts';
import { upsertProject } from '../../db/projects.ts';
import { withPlatform } from '../../db/withPlatform.ts';
import { withProject } from '../../db/withProject.ts';
import { bodyHash } from '../../pipeline/contracts/canonicalJson.ts';
import { useTestDatabase } from '../helpers/testDatabase.ts';

const db = useTestDatabase();
const actor = 'test';
const Count = z.object({ n: z.number() });

async function seed(projectId: string) {
  await withProject(db().pool, projectId, async (tx) => {
    await upsertProject(tx, { projectId, displayName: projectId, actor });
    const body = { owner: projectId };
    const d = await saveDraft(tx, {
      projectId,
      kind: 'project',
      name: 'project',
      body,
      bodyHash: bodyHash(body),
      actor,
    });
    await publishRevision(tx, { projectId, revisionId: d.revisionId, actor });
  });
}

describe('row-level security', () => {
  it("stops project A's transaction from reading project B's rows when the SQL forgets its WHERE", async () => {
    await seed('alpha');
    await seed('beta');
    const seen = await withProject(db().pool, 'alpha', (tx) =>
      tx.any(sql.type(z.object({ projectId: z.string() }))`
        SELECT project_id AS "projectId" FROM contract_revisions
        UNION ALL SELECT project_id FROM projects`),
    );
    expect(seen.length).toBeGreaterThan(0);
    expect(new Set(seen.map((r) => r.projectId))).toEqual(new Set(['alpha']));
  });

  it("stops project A's transaction from writing project B's rows", async () => {
    await seed('gamma');
    await seed('delta');
    // an UPDATE without WHERE touches only A's own rows
    const updated = await withProject(db().pool, 'gamma', (tx) =>
      tx.query(sql.unsafe`UPDATE projects SET display_name = 'renamed'`),
    );
    expect(updated.rowCount).toBe(1);
    // inserting a row that claims B is refused by the policy's WITH CHECK
    await expect(
      withProject(db().pool, 'gamma', (tx) =>
        tx.query(sql.unsafe`INSERT INTO project_migration_state (project_id, flow, mode, updated_by)
                            VALUES ('delta', 'default', 'auto_remediate', 'attacker')`),
      ),
    ).rejects.toThrow(/row-level security/);
    // and moving an own row into B is refused too
    await expect(
      withProject(db().pool, 'gamma', (tx) =>
        tx.query(sql.unsafe`INSERT INTO audit_events (project_id, chain, actor, action, subject)
                            VALUES ('delta', 'x', 'attacker', 'forged', 'x')`),
      ),
    ).rejects.toThrow(/row-level security/);
    const delta = await withProject(db().pool, 'delta', (tx) =>
      tx.one(sql.type(z.object({ displayName: z.string(), states: z.number() }))`
        SELECT display_name AS "displayName", (SELECT count(*) FROM project_migration_state) AS states
          FROM projects`),
    );
    expect(delta).toEqual({ displayName: 'delta', states: 0 });
  });

  it('sees nothing at all outside a project transaction (the pool connects as the tenant role)', async () => {
    await seed('epsilon');
    const n = await db().pool.one(sql.type(Count)`SELECT count(*) AS n FROM contract_revisions`);
    expect(n.n).toBe(0);
  });

  it('lets the platform role see every tenant, and audits each platform session', async () => {
    await seed('zeta');
    const projects = await withPlatform(
      db().platformPool,
      { actor: 'ops:alice', reason: 'list tenants' },
      (tx) =>
        tx.anyFirst(
          sql.type(z.object({ p: z.string() }))`SELECT project_id AS p FROM projects ORDER BY 1`,
        ),
    );
    expect(projects).toEqual(expect.arrayContaining(['alpha', 'beta', 'zeta']));
    const owner = await db().owner();
    const { rows } = await owner.query(
      "SELECT actor, detail->>'reason' AS reason FROM audit_events WHERE project_id = 'platform' AND action = 'platform.access'",
    );
    expect(rows).toContainEqual({ actor: 'ops:alice', reason: 'list tenants' });
    // a tenant cannot read the platform's audit rows
    const leaked = await withProject(db().pool, 'zeta', (tx) =>
      tx.one(sql.type(Count)`SELECT count(*) AS n FROM audit_events WHERE project_id = 'platform'`),
    );
    expect(leaked.n).toBe(0);
  });

  it("refuses a project id that is not one, including the platform's own", async () => {
    await expect(withProject(db().pool, 'platform', async () => 1)).rejects.toMatchObject({
      code: 'TENANT_ISOLATION',
    });
    await expect(withProject(db().pool, "x'; --", async () => 1)).rejects.toMatchObject({
      code: 'TENANT_ISOLATION',
    });
  });
});
