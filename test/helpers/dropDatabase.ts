import pg from 'pg';
import { serverUrl } from './serverUrl.ts';

/** Drops `name` on the test server if it exists, closing whatever still holds a connection. */
export async function dropDatabase(name: string): Promise<void> {
  const admin = new pg.Client({ connectionString: serverUrl('postgres') });
  await admin.connect();
  try {
    await admin.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`);
  } finally {
    await admin.end();
  }
}
