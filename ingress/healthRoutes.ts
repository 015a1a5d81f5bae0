import Router from '@koa/router';
import type { Redis } from 'ioredis';
import { sql, type DatabasePool } from 'slonik';
import { z } from 'zod';
import type { AppState } from './AppState.ts';

/** What readiness checks need. `codeMigration` is the newest migration this build ships. */
export type HealthDeps = { pool: DatabasePool; redis: Redis; codeMigration: number };

/**
 * `/healthz`: the process is up (no dependencies touched). `/readyz`: Postgres and Redis
 * answer and the database has every migration this build knows; 503 with the failing checks
 * otherwise, so a load balancer sends nothing to a process that cannot do its work.
 */
export function healthRoutes({ pool, redis, codeMigration }: HealthDeps): Router<AppState> {
  const router = new Router<AppState>();
  router.get('/healthz', (ctx) => {
    ctx.body = { status: 'ok' };
  });
  router.get('/readyz', async (ctx) => {
    const checks: Record<string, string> = {};
    await Promise.all([
      pool
        .oneFirst(
          sql.type(
            z.object({ v: z.number() }),
          )`SELECT coalesce(max(version), 0) AS v FROM schema_migrations`,
        )
        .then((v) => {
          checks.postgres = 'ok';
          checks.migrations =
            v === codeMigration ? 'ok' : `database at ${v}, code at ${codeMigration}`;
        })
        .catch((error: Error) => {
          checks.postgres = `unreachable: ${error.message.split('\n')[0]}`;
        }),
      withTimeout(redis.ping(), 2000)
        .then(() => {
          checks.redis = 'ok';
        })
        .catch((error: Error) => {
          checks.redis = `unreachable: ${error.message}`;
        }),
    ]);
    const ready = Object.values(checks).every((c) => c === 'ok');
    ctx.status = ready ? 200 : 503;
    ctx.body = { status: ready ? 'ready' : 'not_ready', checks };
  });
  return router;
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  return Promise.race([
    promise,
    new Promise<T>((_, reject) =>
      setTimeout(() => reject(new Error(`no answer in ${ms} ms`)), ms).unref(),
    ),
  ]);
}
