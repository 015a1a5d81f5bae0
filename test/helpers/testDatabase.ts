import pg from 'pg';
import type { DatabasePool } from 'slonik';
import { afterAll, beforeAll, inject } from 'vitest';
import { createDbPool } from '../../db/createDbPool.ts';
import { loginUrl } from '../../db/loginUrl.ts';
import { dropDatabase } from './dropDatabase.ts';
import { serverUrl, uniqueDatabaseName } from './serverUrl.ts';

/** A test file's own database, cloned from the migrated template. */
export type TestDatabase = {
  /** Connection URL of this file's database (the owner's, as `DATABASE_URL` would be). */
  url: string;
  /** A pool connected as the runtime is (`awooop_runtime`): tenant role, row-level security on. */
  pool: DatabasePool;
  /** A pool connected as the sweeper is: may also scan ids and states across projects. */
  sweeperPool: DatabasePool;
  /** A pool connected as the CLI is: the only one `withPlatform` works on. */
  platformPool: DatabasePool;
  /** A raw owner connection for what tests do behind the platform's back (tampering). */
  owner: () => Promise<pg.Client>;
};

/**
 * Creates this file's database from the template before the file's tests and drops it after.
 * Call once at the top of a test file; the returned getter works inside tests and hooks.
 */
export function useTestDatabase(): () => TestDatabase {
  let db: TestDatabase | undefined;
  const name = uniqueDatabaseName('awooop_t');
  const owners: pg.Client[] = [];
  async function create() {
    const admin = new pg.Client({ connectionString: serverUrl('postgres') });
    await admin.connect();
    try {
      for (let attempt = 0; ; attempt += 1) {
        try {
          await admin.query(
            `CREATE DATABASE ${pg.escapeIdentifier(name)} TEMPLATE ${pg.escapeIdentifier(inject('templateDatabase'))}`,
          );
          break;
        } catch (error) {
          // 55006: the template is busy with another clone; wait and try again
          if ((error as { code?: string }).code !== '55006' || attempt > 20) throw error;
          await new Promise((r) => setTimeout(r, 100 + Math.random() * 200));
        }
      }
    } finally {
      await admin.end();
    }
    const url = serverUrl(name);
    db = {
      url,
      pool: await createDbPool(loginUrl(url, 'app'), { maxPoolSize: 5 }),
      sweeperPool: await createDbPool(loginUrl(url, 'sweeper'), { maxPoolSize: 2 }),
      platformPool: await createDbPool(loginUrl(url, 'platform'), { maxPoolSize: 2 }),
      owner: async () => {
        const client = new pg.Client({ connectionString: url });
        await client.connect();
        owners.push(client);
        return client;
      },
    };
  }

  beforeAll(create);

  afterAll(async () => {
    await Promise.all(owners.map((c) => c.end().catch(() => {})));
    await Promise.all([db?.pool.end(), db?.sweeperPool.end(), db?.platformPool.end()]);
    await dropDatabase(name);
  });

  return () => {
    if (!db) throw new Error('test database not ready: call it inside a test or beforeAll');
    return db;
  };
}
