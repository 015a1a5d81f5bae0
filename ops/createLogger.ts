import { pino, type Logger } from 'pino';
import { serializeError } from './serializeError.ts';

/** What a client sent, as a property name: never logged as is, at the top or one level down. */
const CLIENT_DATA = ['headers', 'rawHeaders', 'rawPacket', 'body', 'rawBody', 'cookie'];

/** Keys whose values are never written to a log line, wherever they appear. */
const REDACT = [
  ...CLIENT_DATA,
  ...CLIENT_DATA.map((key) => `*.${key}`),
  'password',
  'token',
  'secret',
  'apiKey',
  'authorization',
  '*.password',
  '*.token',
  '*.secret',
  '*.apiKey',
  '*.authorization',
  'headers.authorization',
  'req.headers.authorization',
  'config.AWOOOP_ADMIN_TOKEN',
  'config.AWOOOP_SECRET_KEY',
];

/**
 * Structured JSON logs. Child loggers carry `trace_id`, `run_id` and `project_id` where they
 * exist; pino writes asynchronously so logging never blocks a stage. An error under `err`,
 * `error` or `cause` is written by {@link serializeError} (its type, message, stack and code,
 * never the request bytes, headers or body it may carry), and the keys in `REDACT` are
 * replaced wherever a line holds them.
 */
export function createLogger(
  options: { level?: string; name?: string; destination?: NodeJS.WritableStream } = {},
): Logger {
  const base = { name: options.name ?? 'awooop' };
  const config = {
    level: options.level ?? 'info',
    base,
    redact: { paths: REDACT, censor: '[redacted]' },
    serializers: { err: serializeError, error: serializeError, cause: serializeError },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  return options.destination ? pino(config, options.destination) : pino(config);
}

export type { Logger };
