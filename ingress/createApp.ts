import Router from '@koa/router';
import type { Queue } from 'bullmq';
import Koa from 'koa';
import type { Logger } from 'pino';
import type { Stage } from '../pipeline/contracts/runJob.ts';
import type { SecretResolver } from '../pipeline/secrets/createSecretResolver.ts';
import { adminBoard } from './adminBoard.ts';
import type { AcceptDeps } from './acceptInbound.ts';
import { apiRoutes } from './apiRoutes.ts';
import type { AccountLookup } from './createAccountLookup.ts';
import { errorMiddleware } from './errorMiddleware.ts';
import { healthRoutes, type HealthDeps } from './healthRoutes.ts';
import { webhookRoutes } from './webhookRoutes.ts';

/** Everything the HTTP edge needs, built once in `ops/`. */
export type AppDeps = HealthDeps &
  AcceptDeps & {
    logger: Logger;
    accounts: AccountLookup;
    secrets: SecretResolver;
    queues: Record<Stage, Queue>;
    adminToken?: string | undefined;
    viewerToken?: string | undefined;
    /** Renders `/metrics`; absent: no metrics route. */
    metrics?: () => Promise<string>;
  };

/** The Koa application: error mapping first, then the routes. No listening here. */
export function createApp(deps: AppDeps): Koa {
  const app = new Koa({ proxy: false });
  app.use(errorMiddleware({ logger: deps.logger }));
  app.use(
    adminBoard({
      queues: Object.values(deps.queues),
      adminToken: deps.adminToken,
      viewerToken: deps.viewerToken,
    }),
  );
  const routers: Router[] = [healthRoutes(deps), webhookRoutes(deps), apiRoutes(deps)];
  if (deps.metrics) {
    const render = deps.metrics;
    const metrics = new Router();
    metrics.get('/metrics', async (ctx) => {
      ctx.type = 'text/plain; version=0.0.4';
      ctx.body = await render();
    });
    routers.push(metrics);
  }
  for (const router of routers) app.use(router.routes()).use(router.allowedMethods());
  return app;
}
