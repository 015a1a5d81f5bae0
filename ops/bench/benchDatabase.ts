import pg from 'pg';
import { ensureDatabase, migrate } from '../../db/migrate.ts';

/** The bench's own tables: the baseline's runs and hops, beside AwoooP's schema. */
const BENCH_TABLES = `
  CREATE TABLE bench_runs (
    seq          bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    id           uuid PRIMARY KEY,
    body         jsonb NOT NULL,
    hop          smallint NOT NULL DEFAULT 0,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz
  );
  CREATE INDEX bench_runs_open ON bench_runs (seq) WHERE completed_at IS NULL;
  CREATE TABLE bench_hops (
    hop_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id uuid NOT NULL REFERENCES bench_runs (id),
    hop    smallint NOT NULL,
    at     timestamptz NOT NULL DEFAULT now()
  );`;

/** The server the bench uses: local, trust auth, as the issue fixes it. */
export const BENCH_SERVER_URL = 'postgres://postgres@127.0.0.1:5432';

/** The URL of a database on the bench server. */
export function benchDatabaseUrl(name: string): string {
  return `${BENCH_SERVER_URL}/${encodeURIComponent(name)}`;
}

/**
 * Drops `name` if a killed bench left it behind, creates it, applies every AwoooP migration and
 * adds the baseline's tables. Returns the owner's URL.
 */
export async function createBenchDatabase(name: string): Promise<string> {
  await dropBenchDatabase(name);
  const url = benchDatabaseUrl(name);
  await ensureDatabase(url);
  await migrate(url);
  await withClient(url, (client) => client.query(BENCH_TABLES));
  return url;
}

/** Drops the bench database, closing whatever still holds a connection to it. */
export async function dropBenchDatabase(name: string): Promise<void> {
  await withClient(benchDatabaseUrl('postgres'), (client) =>
    client.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`),
  );
}

/** Runs `fn` with a connected owner client, always closing it. */
export async function withClient<T>(
  url: string,
  fn: (client: pg.Client) => Promise<T>,
): Promise<T> {
  const client = new pg.Client({ connectionString: url, application_name: 'awooop-bench' });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}
