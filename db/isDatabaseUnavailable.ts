import {
  BackendTerminatedError,
  BackendTerminatedUnexpectedlyError,
  ConnectionError,
} from 'slonik';
import type { ErrorCode } from '../pipeline/errors.ts';
import { AppError } from '../pipeline/errors.ts';

/**
 * SQLSTATEs of a server that is going away or not back yet: class 08 (connection exception),
 * 57P01 admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now (starting up or
 * shutting down), 53300 too_many_connections (a restart's reconnect storm).
 */
const UNAVAILABLE_STATE = /^(08...|57P0[123]|53300)$/;

/** Socket errors of a connection that was refused, dropped or never answered. */
const SOCKET_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
]);

/** pg's own wording for a socket that closed under it, and for a connect that timed out. */
const DRIVER_MESSAGES = /^Connection terminated|timeout exceeded when trying to connect/;

/**
 * Whether `error` says the database could not be reached (refused, dropped, restarting,
 * a pool that could not connect) rather than that a statement was wrong: retrying later
 * fixes it, and nothing about the run or the request is at fault. Follows `cause` a few links
 * deep, as slonik wraps the driver's error. An {@link AppError} on the way is a decision the
 * platform already made (a peer's network error mapped to `MODEL_NETWORK`, say) and is never
 * read as the database's.
 */
export function isDatabaseUnavailable(error: unknown): boolean {
  let current: unknown = error;
  for (let depth = 0; depth < 6 && current instanceof Error; depth += 1) {
    if (current instanceof AppError) return current.code === DATABASE_UNAVAILABLE;
    if (
      current instanceof ConnectionError ||
      current instanceof BackendTerminatedError ||
      current instanceof BackendTerminatedUnexpectedlyError
    ) {
      return true;
    }
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string' && (UNAVAILABLE_STATE.test(code) || SOCKET_CODES.has(code))) {
      return true;
    }
    if (DRIVER_MESSAGES.test(current.message)) return true;
    current = current.cause;
  }
  return false;
}

/** The code the edge answers (503) and a stage logs while the database is away. */
export const DATABASE_UNAVAILABLE = 'DATABASE_UNAVAILABLE' satisfies ErrorCode;
