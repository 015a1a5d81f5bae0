import { STATUS_CODES } from 'node:http';
import type { Middleware } from 'koa';
import type { Logger } from 'pino';
import { AppError } from '../pipeline/errors.ts';

/**
 * Turns any error into `{ error: { code, message } }` with the error's status. AppErrors
 * keep their code and message; an exposed HTTP error (a client's fault, from Koa or a library)
 * gets a code named after its status (`PAYLOAD_TOO_LARGE`); anything else is a 500 with a
 * generic message, its detail in the log only, so no stack or internal text ever reaches a
 * client. An error status answered without a body (an unknown route, the router's 405 and
 * 501) gets the same shape.
 */
export function errorMiddleware({ logger }: { logger: Logger }): Middleware {
  return async function handleErrors(ctx, next) {
    try {
      await next();
      if (ctx.status >= 400 && (ctx.body === undefined || ctx.body === null)) {
        const status = ctx.status;
        ctx.body = {
          error: {
            code: codeFor(status),
            message:
              status === 404
                ? `no route for ${ctx.method} ${ctx.path}`
                : status === 405
                  ? `${ctx.method} is not allowed on ${ctx.path}`
                  : (STATUS_CODES[status] ?? `HTTP ${status}`),
          },
        };
        // Setting a body resets a bodiless status to 200; keep the one the route chose.
        ctx.status = status;
      }
    } catch (error) {
      if (error instanceof AppError && error.status < 500) {
        ctx.status = error.status;
        ctx.body = { error: { code: error.code, message: error.message } };
        return;
      }
      const http = error as { status?: unknown; expose?: unknown };
      const status =
        http.expose === true && typeof http.status === 'number' && http.status < 500
          ? http.status
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
          : { error: { code: codeFor(status), message: (error as Error).message } };
    }
  };
}

/** `405` → `METHOD_NOT_ALLOWED`: the status's reason phrase as a code. */
function codeFor(status: number): string {
  const phrase = STATUS_CODES[status];
  return phrase ? phrase.toUpperCase().replace(/[^A-Z0-9]+/g, '_') : `HTTP_${status}`;
}
