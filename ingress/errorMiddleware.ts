import type { Middleware } from 'koa';
import type { Logger } from 'pino';
import { AppError } from '../pipeline/errors.ts';

/**
 * Turns any error into `{ error: { code, message } }` with the error's status. AppErrors
 * keep their code and message; anything else is a 500 with a generic message, its detail in
 * the log only, so no stack or internal text ever reaches a client.
 */
export function errorMiddleware({ logger }: { logger: Logger }): Middleware {
  return async function handleErrors(ctx, next) {
    try {
      await next();
      if (ctx.status === 404 && ctx.body === undefined) {
        ctx.status = 404;
        ctx.body = {
          error: { code: 'NOT_FOUND', message: `no route for ${ctx.method} ${ctx.path}` },
        };
      }
    } catch (error) {
      if (error instanceof AppError && error.status < 500) {
        ctx.status = error.status;
        ctx.body = { error: { code: error.code, message: error.message } };
        return;
      }
      const status = (error as { status?: number; expose?: boolean }).expose
        ? (error as { status: number }).status
        : 500;
      logger.error({ err: error, path: ctx.path }, 'request failed');
      ctx.status = status;
      ctx.body =
        status === 500
          ? {
              error: {
                code: 'INTERNAL',
                message: 'internal error; the detail is in the server log',
              },
            }
          : { error: { code: 'BAD_REQUEST', message: (error as Error).message } };
    }
  };
}
