/**
 * The Postgres server tests use: `DATABASE_URL`'s server (the run's embedded one when it was
 * unset, see globalSetup), or the local default.
 */
export function serverUrl(database: string): string {
  const url = new URL(process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres');
  url.pathname = `/${database}`;
  url.search = '';
  return url.toString();
}

/** A database name no other run on this machine will pick: prefix, epoch seconds, random. */
export function uniqueDatabaseName(prefix: string): string {
  return `${prefix}_${Math.floor(Date.now() / 1000)}_${Math.random().toString(36).slice(2, 10)}`;
}
