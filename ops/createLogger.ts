import { pino, type Logger } from 'pino';

/** Keys whose values are never written to a log line, wherever they appear. */
const REDACT = [
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
 * exist; pino writes asynchronously so logging never blocks a stage.
 */
export function createLogger(
  options: { level?: string; name?: string; destination?: NodeJS.WritableStream } = {},
): Logger {
  const base = { name: options.name ?? 'awooop' };
  const config = {
    level: options.level ?? 'info',
    base,
    redact: { paths: REDACT, censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  return options.destination ? pino(config, options.destination) : pino(config);
}

export type { Logger };
