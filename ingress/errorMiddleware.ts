import { STATUS_CODES } from 'node:http';
import type { Context, Middleware } from 'koa';
import type { Logger } from 'pino';
import { DATABASE_UNAVAILABLE, isDatabaseUnavailable } from '../db/isDatabaseUnavailable.ts';
import { ProjectId } from '../pipeline/contracts/common.ts';
import type { ErrorCode } from '../pipeline/errorCodes.ts';
import { AppError, TryLaterError } from '../pipeline/errors.ts';
import { statusErrorCode } from './statusErrorCode.ts';

/** Seconds a client is told to wait (`Retry-After`) while the database is unreachable. */
const DATABASE_RETRY_AFTER_S = 5;

/**
 * Turns any error into `{ error: { code, message } }` with the error's status. AppErrors
 * keep their code and message; an exposed HTTP error (a client's fault, from Koa or a library)
 * gets a code named after its status (`PAYLOAD_TOO_LARGE`); anything else is a 500 with a
 * generic message, its detail in the log only, so no stack or internal text ever reaches a
 * client. An unreachable database (a restart, a failover) is a 503 `DATABASE_UNAVAILABLE`
 * with `Retry-After`: nothing was accepted, and a channel's redelivery or the client's retry
 * is what brings the request in once it is back. An error status answered without a body (an
 * unknown route, the router's 405) gets the same shape. Every refusal (4xx) is logged at
 * `warn` with its status and code; a line names the route pattern and a well-formed project
 * id, never the raw path, query, headers or body, which are the client's.
 */
export function errorMiddleware({ logger }: { logger: Logger }): Middleware {
  return async function handleErrors(ctx, next) {
    try {
      await next();
      if (ctx.status >= 400 && (ctx.body === undefined || ctx.body === null)) {
        const status = ctx.status;
        ctx.body = {
          error: {
            code: statusErrorCode(status),
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
        if (status < 500) refused(logger, ctx, status, statusErrorCode(status));
      }
    } catch (error) {
      if (error instanceof TryLaterError) {
        // A limit or a backlog bound: nothing was written, and Retry-After says when to come back.
        ctx.status = error.status;
        ctx.set('Retry-After', String(error.retryAfterS));
        ctx.body = { error: { code: error.code, message: error.message } };
        refused(logger, ctx, error.status, error.code);
        return;
      }
      if (error instanceof AppError && error.status < 500) {
        ctx.status = error.status;
        ctx.body = { error: { code: error.code, message: error.message } };
        refused(logger, ctx, error.status, error.code);
        return;
      }
      if (isDatabaseUnavailable(error)) {
        logger.warn(
          { status: 503, code: DATABASE_UNAVAILABLE, ...where(ctx), err: (error as Error).message },
          'database unreachable',
        );
        ctx.status = 503;
        ctx.set('Retry-After', String(DATABASE_RETRY_AFTER_S));
        ctx.body = {
          error: {
            code: DATABASE_UNAVAILABLE,
            message: `the database is unreachable; retry in ${DATABASE_RETRY_AFTER_S} s`,
          },
        };
        return;
      }
      const http = error as { status?: unknown; expose?: unknown };
      const status =
        http.expose === true && typeof http.status === 'number' && http.status < 500
          ? http.status
          : 500;
      if (status === 500) logger.error({ err: error, ...where(ctx) }, 'request failed');
      else refused(logger, ctx, status, statusErrorCode(status));
      ctx.status = status;
      ctx.body =
        status === 500
          ? {
              error: {
                code: 'INTERNAL' satisfies ErrorCode,
                message: 'internal error; the detail is in the server log',
              },
            }
          : { error: { code: statusErrorCode(status), message: (error as Error).message } };
    }
  };
}

/** A refusal's log line: what was refused and why, nothing the client sent. */
function refused(logger: Logger, ctx: Context, status: number, code: ErrorCode): void {
  logger.warn({ status, code, ...where(ctx) }, 'request refused');
}

/** The request's method, route pattern and project, as far as they are not free text. */
function where(ctx: Context): Record<string, string> {
  const out: Record<string, string> = { method: ctx.method };
  const route = (ctx as Context & { _matchedRoute?: unknown })._matchedRoute;
  if (typeof route === 'string') out['route'] = route;
  const projectId = (ctx.params as Record<string, unknown> | undefined)?.['projectId'];
  if (ProjectId.safeParse(projectId).success) out['projectId'] = projectId as string;
  return out;
}
