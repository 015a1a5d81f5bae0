import pg from 'pg';
import type { TestProject } from 'vitest/node';
import { ensureDatabase, migrate } from '../../db/migrate.ts';
import { serverUrl, uniqueDatabaseName } from './serverUrl.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    templateDatabase: string;
  }
}

/** Test databases left behind by a run that was killed are dropped after this long. */
const STALE_AFTER_SECONDS = 6 * 3600;

/**
 * Migrates one template database per test run; every test file clones its own database from
 * it (`CREATE DATABASE … TEMPLATE`), which is far faster than migrating per file.
 */
export default async function setup(project: TestProject) {
  const admin = new pg.Client({ connectionString: serverUrl('postgres') });
  await admin.connect();
  try {
    const { rows } = await admin.query<{ datname: string }>(
      "SELECT datname FROM pg_database WHERE datname ~ '^awooop_(t|tpl)_[0-9]+_'",
    );
    const now = Date.now() / 1000;
    for (const { datname } of rows) {
      const created = Number(datname.split('_')[2]);
      if (now - created > STALE_AFTER_SECONDS) {
        await admin.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(datname)} WITH (FORCE)`);
      }
    }
  } finally {
    await admin.end();
  }

  const template = uniqueDatabaseName('awooop_tpl');
  await ensureDatabase(serverUrl(template));
  await migrate(serverUrl(template));
  project.provide('templateDatabase', template);

  return async () => {
    const client = new pg.Client({ connectionString: serverUrl('postgres') });
    await client.connect();
    try {
      await client.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(template)} WITH (FORCE)`);
    } finally {
      await client.end();
    }
  };
}
