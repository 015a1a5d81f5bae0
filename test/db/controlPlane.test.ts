import { sql } from 'slonik';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import {
  activateRevision,
  listActive,
  publishRevision,
  readActive,
  rollbackContract,
  saveDraft,
} from '../../db/contractRevisions.ts';
import { readArtifact, putArtifact } from '../../db/artifacts.ts';
import { upsertProject } from '../../db/projects.ts';
import { withProject } from '../../db/withProject.ts';
import { bodyHash } from '../../pipeline/contracts/canonicalJson.ts';
import { PolicyContract } from '../../pipeline/contracts/policyContract.ts';
import { readActiveContract } from '../../pipeline/control/readActiveContract.ts';
import { createContractReader } from '../../pipeline/runs/createContractReader.ts';
import { useTestDatabase } from '../helpers/testDatabase.ts';

const db = useTestDatabase();
const actor = 'test';

async function publishedRevision(projectId: string, name: string, body: Record<string, unknown>) {
  return withProject(db().pool, projectId, async (tx) => {
    await upsertProject(tx, { projectId, displayName: projectId, actor });
    const draft = await saveDraft(tx, {
      projectId,
      kind: 'agent',
      name,
      body,
      bodyHash: bodyHash(body),
      actor,
    });
    const published = await publishRevision(tx, { projectId, revisionId: draft.revisionId, actor });
    await activateRevision(tx, {
      projectId,
      kind: 'agent',
      name,
      revisionId: draft.revisionId,
      actor,
    });
    return published!;
  });
}

describe('contract revisions', () => {
  it('refuses UPDATE and DELETE of a published revision even from raw SQL as the owner', async () => {
    const rev = await publishedRevision('immut', 'sre', { v: 1 });
    const owner = await db().owner();
    await expect(
      owner.query(`UPDATE contract_revisions SET body = '{"v":2}' WHERE revision_id = $1`, [
        rev.revisionId,
      ]),
    ).rejects.toMatchObject({ code: 'AW001' });
    await expect(
      owner.query('DELETE FROM contract_revisions WHERE revision_id = $1', [rev.revisionId]),
    ).rejects.toMatchObject({
      code: 'AW001',
    });
    await expect(owner.query('TRUNCATE contract_revisions CASCADE')).rejects.toMatchObject({
      code: 'AW001',
    });
    const { rows } = await owner.query(
      'SELECT body FROM contract_revisions WHERE revision_id = $1',
      [rev.revisionId],
    );
    expect(rows[0].body).toEqual({ v: 1 });
  });

  it('lets a draft change its body but not its identity, and refuses a pointer to a draft', async () => {
    const projectId = 'drafts';
    await withProject(db().pool, projectId, async (tx) => {
      await upsertProject(tx, { projectId, displayName: 'd', actor });
      const a = await saveDraft(tx, {
        projectId,
        kind: 'policy',
        name: 'default',
        body: { a: 1 },
        bodyHash: bodyHash({ a: 1 }),
        actor,
      });
      const b = await saveDraft(tx, {
        projectId,
        kind: 'policy',
        name: 'default',
        body: { a: 2 },
        bodyHash: bodyHash({ a: 2 }),
        actor,
      });
      expect(b.revisionId).toBe(a.revisionId);
      expect(b.body).toEqual({ a: 2 });
      // expected failures run in a savepoint so the test's transaction stays usable
      await expect(
        tx.transaction((sp) =>
          sp.query(
            sql.unsafe`UPDATE contract_revisions SET version = 9 WHERE revision_id = ${a.revisionId}`,
          ),
        ),
      ).rejects.toThrow(/only its body and status/);
      // the runtime's read goes through the pointer, which cannot name a draft
      expect(
        await activateRevision(tx, {
          projectId,
          kind: 'policy',
          name: 'default',
          revisionId: a.revisionId,
          actor,
        }),
      ).toBeNull();
      await expect(
        tx.transaction((sp) =>
          sp.query(sql.unsafe`INSERT INTO contract_active (project_id, kind, name, revision_id, activated_by)
                              VALUES (${projectId}, 'policy', 'default', ${a.revisionId}, 'x')`),
        ),
      ).rejects.toThrow(/foreign key/);
      expect(await readActive(tx, { projectId, kind: 'policy', name: 'default' })).toBeNull();
    });
  });

  it('never shows a draft to the runtime read, and every active revision has an id and a body hash', async () => {
    const projectId = 'nodraft';
    const v1 = await publishedRevision(projectId, 'bot', { prompt: 'one' });
    await withProject(db().pool, projectId, async (tx) => {
      await saveDraft(tx, {
        projectId,
        kind: 'agent',
        name: 'bot',
        body: { prompt: 'draft' },
        bodyHash: bodyHash({ prompt: 'draft' }),
        actor,
      });
      const active = await readActive(tx, { projectId, kind: 'agent', name: 'bot' });
      expect(active).toMatchObject({
        revisionId: v1.revisionId,
        body: { prompt: 'one' },
        bodyHash: bodyHash({ prompt: 'one' }),
      });
      for (const row of await listActive(tx)) {
        expect(row.revisionId).toMatch(/^[0-9a-f-]{36}$/);
        expect(row.bodyHash).toMatch(/^[0-9a-f]{64}$/);
      }
    });
  });

  it('activates and rolls back in one statement each, writing history and audit only on change', async () => {
    const projectId = 'rollback';
    const v1 = await publishedRevision(projectId, 'bot', { n: 1 });
    const v2 = await publishedRevision(projectId, 'bot', { n: 2 });
    await withProject(db().pool, projectId, async (tx) => {
      expect((await readActive(tx, { projectId, kind: 'agent', name: 'bot' }))?.revisionId).toBe(
        v2.revisionId,
      );
      const back = await rollbackContract(tx, { projectId, kind: 'agent', name: 'bot', actor });
      expect(back).toMatchObject({
        revisionId: v1.revisionId,
        previousRevisionId: v2.revisionId,
        changed: true,
      });
      expect((await readActive(tx, { projectId, kind: 'agent', name: 'bot' }))?.revisionId).toBe(
        v1.revisionId,
      );
      // nothing older than v1: no rollback target
      expect(
        await rollbackContract(tx, { projectId, kind: 'agent', name: 'bot', actor }),
      ).toBeNull();
      const again = await activateRevision(tx, {
        projectId,
        kind: 'agent',
        name: 'bot',
        revisionId: v1.revisionId,
        actor,
      });
      expect(again?.changed).toBe(false);
      const history = await tx.any(sql.type(z.object({ action: z.string() }))`
        SELECT action FROM contract_activations WHERE name = 'bot' ORDER BY activation_id`);
      expect(history.map((h) => h.action)).toEqual(['activate', 'activate', 'rollback']);
      const audits = await tx.any(sql.type(z.object({ action: z.string() }))`
        SELECT action FROM audit_events WHERE chain = 'contract:agent:bot' ORDER BY seq`);
      expect(audits.map((a) => a.action)).toEqual([
        'contract.activate',
        'contract.activate',
        'contract.rollback',
      ]);
    });
  });
});

describe('the runtime read', () => {
  it('returns the active body parsed by its schema, and refuses one that no longer matches its hash', async () => {
    const projectId = 'runtimeread';
    const body = PolicyContract.parse({ modelRoute: { primary: { provider: 'echo' } } });
    const key = { projectId, kind: 'policy' as const, name: 'default' };
    await withProject(db().pool, projectId, async (tx) => {
      await upsertProject(tx, { projectId, displayName: 'r', actor });
      const draft = await saveDraft(tx, { ...key, body, bodyHash: bodyHash(body), actor });
      expect(await readActiveContract(tx, key)).toBeNull();
      await publishRevision(tx, { projectId, revisionId: draft.revisionId, actor });
      await activateRevision(tx, { ...key, revisionId: draft.revisionId, actor });
      const active = await readActiveContract(tx, key);
      expect(active?.body).toEqual(body);
    });
    // an attacker with owner access edits the published body behind the trigger's back
    const owner = await db().owner();
    await owner.query('BEGIN');
    await owner.query("SET LOCAL session_replication_role = 'replica'");
    await owner.query(
      `UPDATE contract_revisions SET body = jsonb_set(body, '{rate,perPeerPerMinute}', '100000') WHERE project_id = $1`,
      [projectId],
    );
    await owner.query('COMMIT');
    await expect(
      withProject(db().pool, projectId, (tx) => readActiveContract(tx, key)),
    ).rejects.toMatchObject({
      code: 'CONTRACT_HASH_MISMATCH',
    });
  });
});

describe('artifacts', () => {
  it('stores by content hash and refuses bytes that no longer match', async () => {
    const projectId = 'artifacts';
    const content = Buffer.from('You are a careful SRE.\n');
    const stored = await withProject(db().pool, projectId, async (tx) => {
      await upsertProject(tx, { projectId, displayName: 'a', actor });
      const first = await putArtifact(tx, {
        projectId,
        ref: 'prompts/sre.md',
        kind: 'prompt',
        mediaType: 'text/markdown',
        content,
        actor,
      });
      const second = await putArtifact(tx, {
        projectId,
        ref: 'prompts/sre.md',
        kind: 'prompt',
        mediaType: 'text/markdown',
        content,
        actor,
      });
      expect([first.created, second.created]).toEqual([true, false]);
      expect(
        (await readArtifact(tx, { projectId, ref: 'prompts/sre.md', sha256: first.sha256 })).equals(
          content,
        ),
      ).toBe(true);
      return first;
    });
    const owner = await db().owner();
    await expect(
      owner.query(`UPDATE artifact_refs SET content = 'evil'::bytea`),
    ).rejects.toMatchObject({ code: 'AW001' });
    await owner.query('ALTER TABLE artifact_refs DISABLE TRIGGER immutable');
    await owner.query(
      `UPDATE artifact_refs SET content = 'You are a reckless SRE.'::bytea WHERE sha256 = $1`,
      [stored.sha256],
    );
    await owner.query('ALTER TABLE artifact_refs ENABLE TRIGGER immutable');
    await expect(
      withProject(db().pool, projectId, (tx) =>
        readArtifact(tx, { projectId, ref: 'prompts/sre.md', sha256: stored.sha256 }),
      ),
    ).rejects.toMatchObject({ code: 'ARTIFACT_HASH_MISMATCH' });
  });

  it('are served by the pipeline reader once checked, within a size bound', async () => {
    const projectId = 'artcache';
    const a = Buffer.from('prompt A\n');
    const b = Buffer.from('prompt B, a little longer\n');
    const [shaA, shaB] = await withProject(db().pool, projectId, async (tx) => {
      await upsertProject(tx, { projectId, displayName: 'a', actor });
      const put = (ref: string, content: Buffer) =>
        putArtifact(tx, {
          projectId,
          ref,
          kind: 'prompt',
          mediaType: 'text/plain',
          content,
          actor,
        });
      return [(await put('p/a.md', a)).sha256, (await put('p/b.md', b)).sha256];
    });
    // room for one of the two at a time
    const reader = createContractReader({ maxArtifactChars: b.length + 1 });
    const read = (ref: string, sha256: string) =>
      withProject(db().pool, projectId, (tx) =>
        reader.artifactText(tx, { projectId, ref, sha256 }),
      );
    expect(await read('p/a.md', shaA)).toBe('prompt A\n');
    const owner = await db().owner();
    await owner.query('ALTER TABLE artifact_refs DISABLE TRIGGER immutable');
    await owner.query(`UPDATE artifact_refs SET content = 'tampered'::bytea WHERE sha256 = $1`, [
      shaA,
    ]);
    await owner.query('ALTER TABLE artifact_refs ENABLE TRIGGER immutable');
    // the text checked at first read is what the runtime keeps using
    expect(await read('p/a.md', shaA)).toBe('prompt A\n');
    // B pushes A out of the cache; read again, A's bytes are checked and refused
    expect(await read('p/b.md', shaB)).toBe('prompt B, a little longer\n');
    await expect(read('p/a.md', shaA)).rejects.toMatchObject({ code: 'ARTIFACT_HASH_MISMATCH' });
  });
});
