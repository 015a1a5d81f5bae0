import { sql } from 'slonik';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDbPool } from '../../db/createDbPool.ts';
import { isDatabaseUnavailable } from '../../db/isDatabaseUnavailable.ts';
import { AppError } from '../../pipeline/errors.ts';
import { startTcpProxy, type TcpProxy } from '../helpers/startTcpProxy.ts';
import { useTestDatabase } from '../helpers/testDatabase.ts';

// What a stage and the edge treat as "the database is away" (wait, 503) rather than a fault of
// the run or the request: errors as the real driver raises them, through a cuttable proxy.
const db = useTestDatabase();
let proxy: TcpProxy;
let proxiedUrl: string;

beforeAll(async () => {
  const url = new URL(db().url);
  proxy = await startTcpProxy({ host: url.hostname, port: Number(url.port || 5432) });
  url.port = String(proxy.port);
  proxiedUrl = url.toString();
});
afterAll(() => proxy?.close());

const failure = (run: () => Promise<unknown>) =>
  run().then(
    () => {
      throw new Error('expected the query to fail');
    },
    (error: unknown) => error,
  );

describe('isDatabaseUnavailable', () => {
  it('says yes for a refused connection and for one dropped mid-query', async () => {
    const pool = await createDbPool(proxiedUrl, { maxPoolSize: 2 });
    try {
      await pool.query(sql.unsafe`SELECT 1`);
      const dropped = failure(() => pool.query(sql.unsafe`SELECT pg_sleep(5)`));
      await new Promise((r) => setTimeout(r, 300));
      await proxy.cut();
      expect(isDatabaseUnavailable(await dropped)).toBe(true);
      const refused = await failure(() => pool.query(sql.unsafe`SELECT 1`));
      expect(isDatabaseUnavailable(refused)).toBe(true);
    } finally {
      await proxy.restore();
      await pool.end();
    }
  });

  it('says yes for a backend an administrator terminated (57P01)', async () => {
    const pool = await createDbPool(db().url, { maxPoolSize: 1, applicationName: 'terminate-me' });
    const owner = await db().owner();
    try {
      const sleeping = failure(() => pool.query(sql.unsafe`SELECT pg_sleep(5)`));
      await new Promise((r) => setTimeout(r, 300));
      await owner.query(
        `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
          WHERE application_name = 'terminate-me' AND datname = current_database()`,
      );
      expect(isDatabaseUnavailable(await sleeping)).toBe(true);
    } finally {
      await pool.end();
    }
  });

  it('says no for a bad statement, and for a peer error the platform already mapped', async () => {
    const bad = await failure(() => db().pool.query(sql.unsafe`SELECT * FROM no_such_table`));
    expect(isDatabaseUnavailable(bad)).toBe(false);
    const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:9'), {
      code: 'ECONNREFUSED',
    });
    const mapped = new AppError('MODEL_NETWORK', 'could not reach the provider', {
      cause: new TypeError('fetch failed', { cause: refused }),
    });
    expect(isDatabaseUnavailable(mapped)).toBe(false);
  });
});
