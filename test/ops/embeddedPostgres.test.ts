import { chmod, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { runningEmbeddedPort, startEmbeddedPostgres } from '../../ops/embeddedPostgres.ts';

const folder = await mkdtemp(`${tmpdir()}/awooop-embedded-test-`);
await chmod(folder, 0o755);
const dataFolder = `${folder}/data`;
afterAll(() => rm(folder, { recursive: true, force: true }));

async function query(url: string, sql: string) {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query(sql)).rows as Record<string, unknown>[];
  } finally {
    await client.end();
  }
}

describe('embedded Postgres', () => {
  it('initialises a data folder, keeps it between starts, and is found from it while it runs', async () => {
    expect(runningEmbeddedPort(dataFolder)).toBeUndefined();
    const first = await startEmbeddedPostgres({ dataFolder, throwaway: true });
    try {
      expect(first.owned).toBe(true);
      expect(runningEmbeddedPort(dataFolder)).toBe(first.port);
      // a second start on the same folder uses the running server and does not own it
      const again = await startEmbeddedPostgres({ dataFolder });
      expect(again).toMatchObject({ port: first.port, owned: false });
      await query(first.url('postgres'), 'CREATE TABLE kept (v int); INSERT INTO kept VALUES (7)');
    } finally {
      await first.stop();
    }
    expect(runningEmbeddedPort(dataFolder)).toBeUndefined();
    // the server ran as a user Postgres accepts (not root) and owns its folder
    expect((await readFile(`${dataFolder}/PG_VERSION`, 'utf8')).trim()).toMatch(/^\d+$/);

    const second = await startEmbeddedPostgres({ dataFolder, throwaway: true });
    try {
      expect(await query(second.url('postgres'), 'SELECT v FROM kept')).toEqual([{ v: 7 }]);
      // trust on loopback: the login roles of migration 0007 need no password
      const [row] = await query(second.url('postgres'), 'SHOW listen_addresses');
      expect(row).toEqual({ listen_addresses: '127.0.0.1' });
    } finally {
      await second.stop();
    }
  });
});
