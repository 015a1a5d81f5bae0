import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import pg from 'pg';

/** Where the numbered, forward-only `.sql` files live. */
export const MIGRATIONS_DIR = fileURLToPath(new URL('./migrations/', import.meta.url));

/** Any key works as long as every AwoooP process uses the same one. */
const MIGRATION_LOCK_KEY = 7_413_220_911;

/** One migration file on disk. */
export type MigrationFile = { version: number; name: string; sql: string; checksum: string };

/** What {@link migrate} did. */
export type MigrateResult = { applied: string[]; current: number };

/** Reads `NNNN_name.sql` files in version order; refuses gaps and duplicate numbers. */
export async function readMigrations(dir = MIGRATIONS_DIR): Promise<MigrationFile[]> {
  const names = (await readdir(dir)).filter((f) => f.endsWith('.sql')).sort();
  const files: MigrationFile[] = [];
  for (const [index, name] of names.entries()) {
    const match = /^(\d{4})_[a-z0-9_]+\.sql$/.exec(name);
    if (!match) throw new MigrationError(`migration file name ${name} is not NNNN_name.sql`);
    const version = Number(match[1]);
    if (version !== index + 1) {
      throw new MigrationError(
        `migration ${name}: expected number ${index + 1}, numbers must not skip`,
      );
    }
    const sql = await readFile(`${dir}/${name}`, 'utf8');
    files.push({ version, name, sql, checksum: createHash('sha256').update(sql).digest('hex') });
  }
  return files;
}

/**
 * Creates the database named in the URL if it does not exist yet, so a fresh machine needs
 * nothing but a running server. Connects to the `postgres` maintenance database for that.
 */
export async function ensureDatabase(databaseUrl: string): Promise<boolean> {
  const url = new URL(databaseUrl);
  const database = decodeURIComponent(url.pathname.slice(1));
  if (!database) throw new MigrationError('DATABASE_URL names no database');
  url.pathname = '/postgres';
  const client = new pg.Client({ connectionString: url.toString() });
  await client.connect();
  try {
    const found = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [database]);
    if (found.rowCount) return false;
    try {
      await client.query(`CREATE DATABASE ${pg.escapeIdentifier(database)}`);
      return true;
    } catch (error) {
      // another process created it between our check and our CREATE
      if ((error as { code?: string }).code === '42P04') return false;
      throw error;
    }
  } finally {
    await client.end();
  }
}

/**
 * Applies pending migrations, each in its own transaction, under an advisory lock so two
 * processes starting together cannot both migrate (the second waits, then finds nothing to
 * do). A migration that was edited after it was applied is refused by checksum.
 * Running it twice is harmless: applied versions are recorded in `schema_migrations`.
 */
export async function migrate(
  databaseUrl: string,
  { log = () => {} }: { log?: (line: string) => void } = {},
): Promise<MigrateResult> {
  const files = await readMigrations();
  const client = new pg.Client({
    connectionString: databaseUrl,
    application_name: 'awooop-migrate',
  });
  await client.connect();
  try {
    await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_KEY]);
    await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT now())`);
    const { rows } = await client.query<{ version: number; name: string; checksum: string }>(
      'SELECT version, name, checksum FROM schema_migrations ORDER BY version',
    );
    const applied = new Map(rows.map((r) => [r.version, r]));
    for (const row of rows) {
      const file = files.find((f) => f.version === row.version);
      if (!file) {
        throw new MigrationError(
          `database has migration ${row.name} that this code does not know: is the code older than the database?`,
        );
      }
      if (file.checksum !== row.checksum) {
        throw new MigrationError(
          `migration ${file.name} was edited after it was applied (checksum ${row.checksum.slice(0, 12)} in the database, ${file.checksum.slice(0, 12)} on disk); add a new migration instead`,
        );
      }
    }
    const done: string[] = [];
    for (const file of files) {
      if (applied.has(file.version)) continue;
      await client.query('BEGIN');
      try {
        await client.query(file.sql);
        await client.query(
          'INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)',
          [file.version, file.name, file.checksum],
        );
        await client.query('COMMIT');
      } catch (error) {
        await client.query('ROLLBACK');
        throw new MigrationError(`migration ${file.name} failed: ${(error as Error).message}`, {
          cause: error,
        });
      }
      log(`applied ${file.name}`);
      done.push(file.name);
    }
    return { applied: done, current: files.at(-1)?.version ?? 0 };
  } finally {
    await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK_KEY]).catch(() => {});
    await client.end();
  }
}

/** A migration could not be applied, or the recorded history does not match the files. */
export class MigrationError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'MigrationError';
  }
}
