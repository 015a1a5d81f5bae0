import { createHash, timingSafeEqual } from 'node:crypto';
import Router from '@koa/router';
import { Registry } from 'prom-client';
import { AppError } from '../pipeline/errors.ts';
import type { AppState } from './AppState.ts';

/**
 * `GET /metrics` behind a bearer token: the scrape lists every tenant's project ids and
 * counts, so it is platform data. `AWOOOP_METRICS_TOKEN` (for the scraper) or the admin token
 * opens it; anything else is 401. With neither configured, metrics are not served at all
 * (404 `METRICS_DISABLED`), never served open. Read-only: a repeated scrape changes nothing.
 */
export function metricsRoute({
  render,
  metricsToken,
  adminToken,
}: {
  render: () => Promise<string>;
  metricsToken: string | undefined;
  adminToken: string | undefined;
}): Router<AppState> {
  const accepted = [metricsToken, adminToken].filter((t): t is string => Boolean(t)).map(digest);
  const router = new Router<AppState>();
  router.get('/metrics', async function serveMetrics(ctx) {
    if (accepted.length === 0) {
      throw new AppError(
        'METRICS_DISABLED',
        'metrics need AWOOOP_METRICS_TOKEN (or AWOOOP_ADMIN_TOKEN) to be set',
        { status: 404 },
      );
    }
    const bearer = /^Bearer\s+(\S+)$/i.exec(ctx.get('authorization'))?.[1];
    // every accepted token is compared, so the time taken does not say which one matched
    const presented = bearer === undefined ? null : digest(bearer);
    const ok = accepted.reduce(
      (hit, t) => (presented && timingSafeEqual(presented, t)) || hit,
      false,
    );
    if (!ok) {
      ctx.set('WWW-Authenticate', 'Bearer realm="awooop metrics"');
      throw new AppError('UNAUTHORIZED', 'the metrics or admin token is required (Bearer)', {
        status: 401,
      });
    }
    ctx.type = Registry.PROMETHEUS_CONTENT_TYPE;
    ctx.body = await render();
  });
  return router;
}

function digest(token: string): Buffer {
  return createHash('sha256').update(token).digest();
}
