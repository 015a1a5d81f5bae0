import { createHash } from 'node:crypto';
import { createPgDriverFactory } from '@slonik/pg-driver';
import {
  createPool,
  createTypeParserPreset,
  SchemaValidationError,
  type DatabasePool,
  type Interceptor,
  type QueryResultRow,
} from 'slonik';
import { AppError } from '../pipeline/errors.ts';
import { sqlState } from './sqlState.ts';

/** The database role the runtime acts as: row-level security applies to it. */
export const APP_ROLE = 'awooop_app';
/** The explicit, audited role that may see every tenant (see `withPlatform`). */
export const PLATFORM_ROLE = 'awooop_platform';
/** The role that may read run ids and states across projects, and nothing else (see `withSweeper`). */
export const SWEEPER_ROLE = 'awooop_sweeper';

/**
 * `sql.type(schema)` only declares a parser; this interceptor is what runs it on every row,
 * so a row that does not match its schema is an error instead of a silent lie.
 */
const resultParser: Interceptor = {
  name: 'result-parser',
  transformRowAsync: async (context, query, row) => {
    const parser = context.resultParser;
    if (!parser) return row;
    const result = await parser['~standard'].validate(row);
    if (result.issues) throw new SchemaValidationError(query, row, result.issues);
    return result.value as QueryResultRow;
  },
};

/**
 * Makes every parameterized query a named prepared statement, named by a hash of its text:
 * Postgres then parses each statement shape once per connection instead of on every call, and
 * plans it once where it settles on a generic plan (planning the stage CTEs cost about as much
 * as running them). Same text, same name, so pg's per-connection statement cache never sees
 * one name with two texts. Only queries with parameters: those already use the extended
 * protocol, so none of them can hold several statements (which a prepared statement cannot).
 * Query shapes are fixed in the code, so the number of statements per connection is bounded.
 */
const namedStatements: Interceptor = {
  name: 'named-statements',
  transformQuery: (_context, query) => {
    if (query.name || query.values.length === 0) return query;
    return { ...query, name: `q_${createHash('sha1').update(query.sql).digest('hex')}` };
  },
};

/** Options for {@link createDbPool}. */
export type DbPoolOptions = {
  /**
   * `app` starts every session as {@link APP_ROLE}, so row-level security holds even for a
   * query run outside `withProject`; `owner` is the migrating user, for migrations only.
   * Which other roles a session can reach depends on the user in the URL, not on this
   * option: the runtime's login role (see `loginUrl`) can become {@link APP_ROLE} only.
   * @defaultValue 'app'
   */
  role?: 'app' | 'owner';
  /** @defaultValue 10 */
  maxPoolSize?: number;
  /** @defaultValue 'awooop' */
  applicationName?: string;
};

/**
 * A slonik pool with the result parser and named statements installed, connected with
 * `databaseUrl` as given: pass a login role's URL (`loginUrl`, or the configured one), not
 * the owner's, for anything but migrations and tools.
 */
export async function createDbPool(
  databaseUrl: string,
  { role = 'app', maxPoolSize = 10, applicationName = 'awooop' }: DbPoolOptions = {},
): Promise<DatabasePool> {
  const url = new URL(databaseUrl);
  url.searchParams.set('application_name', applicationName);
  if (role === 'app') {
    // A startup option, not a SET: no reset between leases could undo it.
    const existing = url.searchParams.get('options');
    url.searchParams.set('options', `${existing ? `${existing} ` : ''}-c role=${APP_ROLE}`);
  }
  const pool = createPool(url.toString(), {
    driverFactory: createPgDriverFactory(),
    interceptors: [namedStatements, resultParser],
    // Our int8 columns are counts, identity ids and sequence numbers, far below 2^53: read
    // them as numbers rather than slonik's default bigint so JSON and zod treat them plainly.
    typeParsers: [
      ...createTypeParserPreset().filter((parser) => parser.name !== 'int8'),
      { name: 'int8', parse: (value: string) => Number(value) },
    ],
    maxPoolSize,
    captureStackTrace: false,
    // slonik's default reset runs DISCARD ALL on every release: a round trip per transaction,
    // and it throws away cached plans (the audit trigger's among them). Nothing here sets
    // session state — role and app.project_id are set_config(..., true), transaction-local,
    // and advisory locks are xact locks — so there is nothing to reset.
    resetConnection: async () => {},
  });
  return pool.catch((error: unknown) => {
    // 28000: no such role, or pg_hba.conf refused it; 28P01: a wrong or missing password
    const state = sqlState(error);
    if (state !== '28000' && state !== '28P01') throw error;
    throw new AppError(
      'DB_LOGIN_REFUSED',
      `Postgres refused the login as ${decodeURIComponent(url.username) || 'the default user'} (${(error as Error).message}); the login roles come from migration 0007 (run awooop migrate first), and with password authentication each process needs its own URL (README, Configuration)`,
      { cause: error },
    );
  });
}
