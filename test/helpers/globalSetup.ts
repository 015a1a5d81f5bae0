import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import pg from 'pg';
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../../ops/embeddedPostgres.ts';
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
  // No DATABASE_URL: one embedded server for the run, in a temporary folder removed after it.
  // Its URL goes into the env, which the test processes (forked after this) and the child
  // processes they start inherit.
  let embedded: { server: EmbeddedPostgres; folder: string } | undefined;
  if (!process.env.DATABASE_URL) {
    const folder = await mkdtemp(`${tmpdir()}/awooop-test-pg-`);
    await chmod(folder, 0o755); // traversable by the server's user when the run is root's
    try {
      const server = await startEmbeddedPostgres({ dataFolder: `${folder}/data`, throwaway: true });
      embedded = { server, folder };
      process.env.DATABASE_URL = server.url('postgres');
    } catch (error) {
      await rm(folder, { recursive: true, force: true });
      throw error;
    }
  }
  const stopEmbedded = async () => {
    if (!embedded) return;
    await embedded.server.stop();
    await rm(embedded.folder, { recursive: true, force: true });
    delete process.env.DATABASE_URL;
  };
  let template: string;
  try {
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

    template = uniqueDatabaseName('awooop_tpl');
    await ensureDatabase(serverUrl(template));
    await migrate(serverUrl(template));
    project.provide('templateDatabase', template);
  } catch (error) {
    // a setup that fails leaves no server behind (it runs detached, in its own group)
    await stopEmbedded();
    throw error;
  }

  return async () => {
    try {
      const client = new pg.Client({ connectionString: serverUrl('postgres') });
      await client.connect();
      try {
        await client.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(template)} WITH (FORCE)`);
      } finally {
        await client.end();
      }
    } finally {
      await stopEmbedded();
    }
  };
}
