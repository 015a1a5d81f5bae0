import { pino } from 'pino';
import { sql, type DatabasePool } from 'slonik';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createDbPool } from '../../db/createDbPool.ts';
import { upsertProject } from '../../db/projects.ts';
import { withPlatform } from '../../db/withPlatform.ts';
import { withProject } from '../../db/withProject.ts';
import { createCliContext, type CliContext } from '../../ops/cli/CliContext.ts';
import { createRuntime, type Runtime } from '../../ops/createRuntime.ts';
import { loadConfig } from '../../ops/loadConfig.ts';
import { useTestDatabase } from '../helpers/testDatabase.ts';
import { TEST_REDIS_URL, useRedisPrefix } from '../helpers/useRedisPrefix.ts';

// Pins issue 12 item 7: the runtime's connection could SET ROLE awooop_platform (or postgres)
// and read every tenant's rows. Each attack is the SQL an attacker would send on the very
// pools the processes build (createRuntime, the CLI context), not on a test-made connection.

const db = useTestDatabase();
const prefix = useRedisPrefix();
const logger = pino({ level: 'silent' });
let runtime: Runtime;
let sweeper: Runtime;
let cli: CliContext;

beforeAll(async () => {
  const config = loadConfig({
    DATABASE_URL: db().url,
    REDIS_URL: TEST_REDIS_URL,
    AWOOOP_REDIS_PREFIX: prefix,
  });
  runtime = await createRuntime(config, { logger, actor: 'web', maxPoolSize: 2 });
  sweeper = await createRuntime(config, {
    logger,
    actor: 'sweeper',
    maxPoolSize: 2,
    login: 'sweeper',
  });
  cli = createCliContext(config, 'test:ci');
  for (const projectId of ['alpha', 'beta'])
    await withProject(db().pool, projectId, (tx) =>
      upsertProject(tx, { projectId, displayName: projectId, actor: 'test' }),
    );
  // one of the platform's own audit rows, as withPlatform writes them
  const owner = await db().owner();
  await owner.query(`INSERT INTO audit_events (project_id, chain, actor, action, subject)
                     VALUES ('platform', 'platform:access', 'ops', 'platform.access', 'platform')`);
});

afterAll(async () => {
  await runtime?.close();
  await sweeper?.close();
  await cli?.close();
});

const Rollback = new Error('rolled back on purpose');

/** One hand-typed statement as a template, the way injected SQL would arrive. */
function raw(statement: string): TemplateStringsArray {
  return Object.assign([statement], { raw: Object.freeze([statement]) });
}

/**
 * Sends `statements` in alpha's transaction on `pool`, then reads which projects and platform
 * audit rows are visible. The transaction is always rolled back, so a session-level SET that
 * succeeded cannot leak into later tests through the pooled connection.
 */
async function attack(
  pool: DatabasePool,
  statements: string[],
): Promise<{ projects: string[]; platformAudit: number }> {
  let seen: { projects: string[]; platformAudit: number } | undefined;
  await withProject(pool, 'alpha', async (tx) => {
    for (const statement of statements) await tx.query(sql.unsafe(raw(statement)));
    seen = {
      projects: [
        ...(await tx.anyFirst(
          sql.type(z.object({ p: z.string() }))`SELECT project_id AS p FROM projects ORDER BY 1`,
        )),
      ],
      platformAudit: await tx.oneFirst(
        sql.type(z.object({ n: z.number() }))`
          SELECT count(*) AS n FROM audit_events WHERE project_id = 'platform'`,
      ),
    };
    throw Rollback;
  }).catch((error: unknown) => {
    if (error !== Rollback) throw error;
  });
  return seen!;
}

describe('the runtime login role', () => {
  it('connects as awooop_runtime acting as awooop_app, not as the owner', async () => {
    const who = await runtime.ctx.pool.one(
      sql.type(z.object({ sessionUser: z.string(), currentUser: z.string(), su: z.boolean() }))`
        SELECT session_user AS "sessionUser", current_user AS "currentUser",
               (SELECT rolsuper FROM pg_roles WHERE rolname = session_user) AS su`,
    );
    expect(who).toEqual({ sessionUser: 'awooop_runtime', currentUser: 'awooop_app', su: false });
  });

  it.each([
    ['SET ROLE awooop_platform'],
    ['SET LOCAL ROLE awooop_platform'],
    ['SET ROLE postgres'],
    ['SET ROLE awooop_sweeper'],
    ['SET ROLE awooop_platform_login'],
    ["SELECT set_config('role', 'awooop_platform', false)"],
    ["SELECT set_config('role', 'postgres', true)"],
    ['SET SESSION AUTHORIZATION postgres'],
    ['SET SESSION AUTHORIZATION awooop_platform_login'],
    // before Postgres 15 anyone could create in public, where the owner's code resolves names
    ['CREATE FUNCTION public.awooop_planted() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$'],
  ])('refuses %s with permission denied', async (statement) => {
    await expect(attack(runtime.ctx.pool, [statement])).rejects.toThrow(/permission denied/);
  });

  it("shows only the own project's rows after RESET ROLE", async () => {
    expect(await attack(runtime.ctx.pool, ['RESET ROLE'])).toEqual({
      projects: ['alpha'],
      platformAudit: 0,
    });
  });

  it('reads nothing at all as the bare login role (SET ROLE NONE)', async () => {
    await expect(attack(runtime.ctx.pool, ['SET ROLE NONE'])).rejects.toThrow(
      /permission denied for table/,
    );
  });

  it("never shows the platform's audit rows, whatever app.project_id says", async () => {
    expect(
      await attack(runtime.ctx.pool, ["SELECT set_config('app.project_id', 'platform', true)"]),
    ).toEqual({ projects: [], platformAudit: 0 });
  });

  it('cannot enter the platform through withPlatform', async () => {
    await expect(
      withPlatform(runtime.ctx.pool, { actor: 'attacker', reason: 'try' }, async () => 'in'),
    ).rejects.toThrow(/platform/);
  });
});

describe('the sweeper and CLI login roles', () => {
  it('the sweeper pool may scan across projects but not become the platform or the owner', async () => {
    for (const statement of ['SET ROLE awooop_platform', 'SET ROLE postgres', 'SET ROLE NONE'])
      await expect(attack(sweeper.ctx.pool, [statement])).rejects.toThrow(/permission denied/);
    expect(await attack(sweeper.ctx.pool, [])).toEqual({ projects: ['alpha'], platformAudit: 0 });
  });

  it('the CLI pool reaches every tenant through withPlatform and cannot become the owner', async () => {
    const { pool } = await cli.connect();
    const projects = await withPlatform(pool, { actor: 'test:ci', reason: 'list' }, (tx) =>
      tx.anyFirst(
        sql.type(z.object({ p: z.string() }))`SELECT project_id AS p FROM projects ORDER BY 1`,
      ),
    );
    expect(projects).toEqual(['alpha', 'beta']);
    for (const statement of ['SET ROLE postgres', 'SET SESSION AUTHORIZATION postgres'])
      await expect(attack(pool, [statement])).rejects.toThrow(/permission denied/);
    const who = await pool.oneFirst(
      sql.type(z.object({ u: z.string() }))`SELECT session_user AS u`,
    );
    expect(who).toBe('awooop_platform_login');
  });
});

describe('the migration check on login roles made elsewhere', () => {
  // Roles are cluster-wide and other test files share the real login roles, so the check is
  // asked about a throwaway role of this file's own instead of granting the real ones more.
  it('names every membership outside the allowed set, and the attributes that reach further', async () => {
    const owner = await db().owner();
    const login = `awooop_test_login_${process.pid}_${Date.now()}`;
    const ask = async (): Promise<string | null> => {
      const { rows } = await owner.query<{ problem: string | null }>(
        'SELECT awooop_login_role_overreach($1, $2) AS problem',
        [login, ['awooop_app']],
      );
      return rows[0]!.problem;
    };
    await owner.query(`CREATE ROLE ${login} LOGIN NOINHERIT`);
    try {
      await owner.query(`GRANT awooop_app TO ${login}`);
      expect(await ask()).toBeNull();
      await owner.query(`GRANT pg_read_all_data, awooop_sweeper TO ${login}`);
      await owner.query(`ALTER ROLE ${login} BYPASSRLS`);
      expect(await ask()).toBe('attributes BYPASSRLS; member of awooop_sweeper, pg_read_all_data');
    } finally {
      await owner.query(`DROP ROLE ${login}`);
    }
  });

  it('passes for the login roles the migrations made', async () => {
    const owner = await db().owner();
    const { rows } = await owner.query<{ problem: string | null }>(
      `SELECT awooop_login_role_overreach('awooop_runtime', ARRAY['awooop_app']::name[])
                || awooop_login_role_overreach('awooop_platform_login', ARRAY['awooop_app', 'awooop_platform']::name[]) AS problem`,
    );
    expect(rows[0]!.problem).toBeNull();
  });
});

describe('a login Postgres refuses', () => {
  it('stops the start with the role and the way out, not a bare driver error', async () => {
    const url = new URL(db().url);
    url.username = 'awooop_no_such_login';
    await expect(createDbPool(url.toString(), { maxPoolSize: 1 })).rejects.toMatchObject({
      code: 'DB_LOGIN_REFUSED',
      message: expect.stringMatching(/awooop_no_such_login.*migration 0007/),
    });
  });
});
