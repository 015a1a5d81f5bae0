import { describe, expect, it } from 'vitest';
import { appendAudit, checkpointAudit, verifyAudit } from '../../db/auditEvents.ts';
import { upsertProject } from '../../db/projects.ts';
import { withPlatform } from '../../db/withPlatform.ts';
import { withProject } from '../../db/withProject.ts';
import { useTestDatabase } from '../helpers/testDatabase.ts';

const db = useTestDatabase();
const actor = 'test';

async function writeTrail(projectId: string, chains: string[], perChain: number) {
  await withProject(db().pool, projectId, async (tx) => {
    await upsertProject(tx, { projectId, displayName: projectId, actor });
    for (const chain of chains) {
      for (let i = 0; i < perChain; i += 1) {
        await appendAudit(tx, {
          projectId,
          chain,
          actor,
          action: 'run.resolved',
          subject: chain,
          detail: { i },
        });
      }
    }
  });
}

const verify = (projectId: string) => withProject(db().pool, projectId, (tx) => verifyAudit(tx));

/** Tampering as an attacker with owner access would: triggers off, change, triggers back on. */
async function tamper(statement: string, params: unknown[] = []) {
  const owner = await db().owner();
  await owner.query('BEGIN');
  await owner.query("SET LOCAL session_replication_role = 'replica'");
  await owner.query(statement, params);
  await owner.query('COMMIT');
}

describe('audit trail', () => {
  it('chains rows per subject and verifies clean', async () => {
    await writeTrail('clean', ['run:a', 'run:b'], 3);
    const result = await verify('clean');
    expect(result).toMatchObject({ events: 6, chains: 2, problems: [] });
  });

  it('is append-only for every role, the owner included', async () => {
    await writeTrail('appendonly', ['run:a'], 1);
    const owner = await db().owner();
    await expect(
      owner.query("UPDATE audit_events SET actor = 'x' WHERE project_id = 'appendonly'"),
    ).rejects.toMatchObject({ code: 'AW001' });
    await expect(
      owner.query("DELETE FROM audit_events WHERE project_id = 'appendonly'"),
    ).rejects.toMatchObject({ code: 'AW001' });
    await expect(owner.query('TRUNCATE audit_events')).rejects.toMatchObject({ code: 'AW001' });
  });

  it('finds an edited row', async () => {
    await writeTrail('edited', ['run:a'], 3);
    await tamper(
      `UPDATE audit_events SET detail = '{"i": 99}' WHERE project_id = 'edited' AND seq = 2`,
    );
    const { problems } = await verify('edited');
    expect(problems).toEqual([
      expect.objectContaining({ kind: 'row_hash', chain: 'run:a', seq: 2 }),
    ]);
  });

  it('finds a deleted middle row and a deleted tail row', async () => {
    await writeTrail('deleted', ['run:a', 'run:b'], 3);
    await tamper(
      `DELETE FROM audit_events WHERE project_id = 'deleted' AND chain = 'run:a' AND seq = 2`,
    );
    await tamper(
      `DELETE FROM audit_events WHERE project_id = 'deleted' AND chain = 'run:b' AND seq = 3`,
    );
    const { problems } = await verify('deleted');
    expect(problems.map((p) => [p.kind, p.chain])).toEqual(
      expect.arrayContaining([
        ['gap', 'run:a'],
        ['head', 'run:b'],
      ]),
    );
  });

  it('finds a rewritten chain through the checkpoint that covered it', async () => {
    await writeTrail('rewritten', ['run:a'], 3);
    const cp = await withProject(db().pool, 'rewritten', (tx) =>
      checkpointAudit(tx, 'rewritten', { settleSeconds: 0 }),
    );
    expect(cp).toMatchObject({ seq: 1, eventCount: 3 });
    expect(
      await withProject(db().pool, 'rewritten', (tx) =>
        checkpointAudit(tx, 'rewritten', { settleSeconds: 0 }),
      ),
    ).toBeNull();
    // a careful attacker recomputes every hash in the chain and its head ...
    await tamper(`UPDATE audit_events SET actor = 'someone-else' WHERE project_id = 'rewritten'`);
    await tamper(`
      DO $$ DECLARE r record; prev text := repeat('0', 64); h text;
      BEGIN
        FOR r IN SELECT * FROM audit_events WHERE project_id = 'rewritten' ORDER BY seq LOOP
          h := audit_row_hash(r.project_id, r.chain, r.seq, r.occurred_at, r.actor, r.action, r.subject,
                              r.detail, r.trace_id, r.run_id, prev);
          UPDATE audit_events SET prev_hash = prev, row_hash = h WHERE audit_id = r.audit_id;
          prev := h;
        END LOOP;
        UPDATE audit_chain_heads SET head_hash = prev WHERE project_id = 'rewritten';
      END $$`);
    // ... and the checkpoint digest still gives it away
    const { problems } = await verify('rewritten');
    expect(problems).toEqual([
      expect.objectContaining({
        kind: 'checkpoint',
        message: 'rows covered by checkpoint 1 were altered',
      }),
    ]);
  });

  it('verifies every project under the platform role', async () => {
    await writeTrail('one', ['run:x'], 2);
    await writeTrail('two', ['run:y'], 2);
    await tamper(`UPDATE audit_events SET subject = 'forged' WHERE project_id = 'two'`);
    const result = await withPlatform(db().platformPool, { actor, reason: 'verify' }, (tx) =>
      verifyAudit(tx),
    );
    const projects = new Set(result.problems.map((p) => p.projectId));
    expect(projects.has('two')).toBe(true);
    expect(projects.has('one')).toBe(false);
  });

  it('lets concurrent writers to different runs proceed without waiting on each other', async () => {
    const projectId = 'busy';
    await withProject(db().pool, projectId, (tx) =>
      upsertProject(tx, { projectId, displayName: 'b', actor }),
    );
    // two open transactions, each holding its run chain's head: neither blocks the other
    let releaseFirst!: () => void;
    const firstHolds = new Promise<void>((r) => (releaseFirst = r));
    let firstWrote!: () => void;
    const wrote = new Promise<void>((r) => (firstWrote = r));
    const first = withProject(db().pool, projectId, async (tx) => {
      await appendAudit(tx, {
        projectId,
        chain: 'run:1',
        actor,
        action: 'run.received',
        subject: 'run:1',
      });
      firstWrote();
      await firstHolds;
    });
    await wrote;
    await withProject(db().pool, projectId, (tx) =>
      appendAudit(tx, {
        projectId,
        chain: 'run:2',
        actor,
        action: 'run.received',
        subject: 'run:2',
      }),
    );
    releaseFirst();
    await first;
    expect((await verify(projectId)).problems).toEqual([]);
  });
});
