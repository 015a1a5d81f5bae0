import Koa from 'koa';
import type { Logger } from 'pino';
import { errorMiddleware } from './errorMiddleware.ts';
import { healthRoutes, type HealthDeps } from './healthRoutes.ts';

/** Everything the HTTP edge needs, built once in `ops/`. */
export type AppDeps = HealthDeps & { logger: Logger };

/** The Koa application: error mapping first, then the routes. No listening here. */
export function createApp(deps: AppDeps): Koa {
  const app = new Koa({ proxy: false });
  app.use(errorMiddleware({ logger: deps.logger }));
  const health = healthRoutes(deps);
  app.use(health.routes()).use(health.allowedMethods());
  return app;
}
