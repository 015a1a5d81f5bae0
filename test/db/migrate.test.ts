import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { ensureDatabase, migrate, readMigrations } from '../../db/migrate.ts';
import { dropDatabase } from '../helpers/dropDatabase.ts';
import { serverUrl, uniqueDatabaseName } from '../helpers/serverUrl.ts';

const created: string[] = [];
afterAll(async () => {
  for (const name of created) await dropDatabase(name);
});

function freshUrl(): string {
  const name = uniqueDatabaseName('awooop_t');
  created.push(name);
  return serverUrl(name);
}

describe('migrate', () => {
  it('creates the database, applies every migration once, and a second run does nothing', async () => {
    const url = freshUrl();
    expect(await ensureDatabase(url)).toBe(true);
    expect(await ensureDatabase(url)).toBe(false);
    const first = await migrate(url);
    expect(first.applied.length).toBe((await readMigrations()).length);
    expect(await migrate(url)).toEqual({ applied: [], current: first.current });
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    const { rows } = await client.query('SELECT count(*)::int AS n FROM schema_migrations');
    await client.end();
    expect(rows).toEqual([{ n: first.applied.length }]);
  });

  it('lets two processes start together: one migrates, the other waits and finds nothing to do', async () => {
    const url = freshUrl();
    await ensureDatabase(url);
    const [a, b] = await Promise.all([migrate(url), migrate(url)]);
    expect([a.applied.length, b.applied.length].sort()).toEqual([
      0,
      (await readMigrations()).length,
    ]);
  });

  it('refuses a migration that was edited after it was applied', async () => {
    const url = freshUrl();
    await ensureDatabase(url);
    await migrate(url);
    // the recorded checksum no longer matching the file on disk is exactly what an edit causes
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    await client.query(`UPDATE schema_migrations SET checksum = repeat('0', 64) WHERE version = 1`);
    await client.end();
    await expect(migrate(url)).rejects.toThrow(
      /0001_roles_and_tenancy\.sql was edited after it was applied/,
    );
  });

  it('refuses migration files whose numbers skip', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'awooop-mig-'));
    try {
      await writeFile(join(dir, '0001_a.sql'), 'SELECT 1;');
      await writeFile(join(dir, '0003_c.sql'), 'SELECT 1;');
      await expect(readMigrations(dir)).rejects.toThrow(/expected number 2/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
