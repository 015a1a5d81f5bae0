import { isIP } from 'node:net';
import { z } from 'zod';
import { loginUrl, type Login } from '../db/loginUrl.ts';

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** Env variables whose values are secrets: never echoed in errors, redacted by `toJSON`. */
const SECRET_NAMES = new Set([
  'AWOOOP_ADMIN_TOKEN',
  'AWOOOP_VIEWER_TOKEN',
  'AWOOOP_METRICS_TOKEN',
  'AWOOOP_SECRET_KEY',
  'AWOOOP_API_KEY',
]);

/** Variables of the platform's own that no tenant `env:` ref may read, whatever the list says. */
const PLATFORM_NAMES = new Set([
  'DATABASE_URL',
  'REDIS_URL',
  'PORT',
  'HOST',
  'LOG_LEVEL',
  'NODE_ENV',
]);

const postgresUrl = z
  .string()
  .refine((v) => /^postgres(ql)?:\/\//.test(v) && URL.canParse(v), 'must be a postgres:// URL');
const redisUrl = z
  .string()
  .refine((v) => /^rediss?:\/\//.test(v) && URL.canParse(v), 'must be a redis:// URL');

/** A DNS name: dot-separated labels of letters, digits and inner hyphens. */
const HOST_NAME =
  /^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$/;

/** The whitelist: only these variables are read, each parsed once at start. */
const EnvSchema = z.object({
  // Unset: `npm start` runs an embedded Postgres (ops/embeddedPostgres.ts) and gives its URL
  // to its children; the other commands use the one it runs (see ownerUrl).
  DATABASE_URL: postgresUrl.optional(),
  // Each process's own login (migration 0007); unset: DATABASE_URL's server and database
  // with the login role as user and no password (see databaseUrlFor).
  AWOOOP_DB_RUNTIME_URL: postgresUrl.optional(),
  AWOOOP_DB_SWEEPER_URL: postgresUrl.optional(),
  AWOOOP_DB_PLATFORM_URL: postgresUrl.optional(),
  REDIS_URL: redisUrl.default('redis://127.0.0.1:6379'),
  PORT: z.coerce.number().int().min(1).max(65535).default(3000),
  // Loopback by default, so a development machine does not serve its API to the network;
  // a deployment behind a load balancer or in a container sets 0.0.0.0 (or ::).
  HOST: z
    .string()
    .refine((v) => isIP(v) !== 0 || HOST_NAME.test(v), 'must be an IP address or a host name')
    .default('127.0.0.1'),
  LOG_LEVEL: z.enum(LOG_LEVELS).default('info'),
  NODE_ENV: z.enum(['development', 'production', 'test']).default('development'),
  AWOOOP_REDIS_PREFIX: z
    .string()
    .regex(/^[A-Za-z0-9_{}-]{1,64}$/, 'must be 1-64 letters, digits, _ - { }')
    .default('awooop'),
  AWOOOP_ADMIN_TOKEN: z.string().min(24, 'must be at least 24 characters').optional(),
  AWOOOP_SECRET_KEY: z
    .string()
    .refine(
      // Strict base64 of exactly 32 bytes: Buffer.from(v, 'base64') skips stray characters,
      // so a 43-letter passphrase would otherwise pass as a key.
      (v) => /^[0-9a-fA-F]{64}$/.test(v) || /^[A-Za-z0-9+/]{43}=?$/.test(v),
      'must be 32 bytes, as 64 hex characters or base64',
    )
    .optional(),
  AWOOOP_ACTOR: z.string().min(1).max(200).optional(),
  /** A project API key the CLI acts with (as `--key`): only what its roles grant. */
  AWOOOP_API_KEY: z.string().min(1).max(300).optional(),
  AWOOOP_VIEWER_TOKEN: z.string().min(24, 'must be at least 24 characters').optional(),
  AWOOOP_METRICS_TOKEN: z.string().min(24, 'must be at least 24 characters').optional(),
  AWOOOP_WORKER_CONCURRENCY: z.coerce.number().int().min(1).max(1000).default(16),
  AWOOOP_SWEEP_INTERVAL_MS: z.coerce.number().int().min(100).max(3_600_000).default(5000),
  /** How often the channels process reconciles and flushes counts without a notification. */
  AWOOOP_CHANNELS_INTERVAL_MS: z.coerce.number().int().min(100).max(3_600_000).default(5000),
  AWOOOP_STALL_MS: z.coerce.number().int().min(100).max(3_600_000).default(30_000),
  AWOOOP_JOB_LOCK_MS: z.coerce.number().int().min(1000).max(600_000).default(30_000),
  /** Jobs of one project each stage runs at once, across all of its workers (a bulkhead). */
  AWOOOP_BULKHEAD_PROJECT_SLOTS: z.coerce.number().int().min(1).max(10_000).default(12),
  /**
   * Jobs of one project waiting on one outside dependency at once (an MCP server, a channel
   * account's API, a model endpoint), unless the contract sets its own.
   */
  AWOOOP_BULKHEAD_DEPENDENCY_SLOTS: z.coerce.number().int().min(1).max(10_000).default(8),
  /** How long a dead worker's place in a share stays taken. */
  AWOOOP_BULKHEAD_LEASE_MS: z.coerce.number().int().min(1000).max(600_000).default(10_000),
  /** Failed credential attempts per source address per window before 429. */
  AWOOOP_AUTH_FAILURES_PER_SOURCE: z.coerce.number().int().min(1).max(1_000_000).default(20),
  /** Failed credential attempts per project per window before sources that failed get 429. */
  AWOOOP_AUTH_FAILURES_PER_PROJECT: z.coerce.number().int().min(1).max(1_000_000).default(100),
  AWOOOP_AUTH_FAILURE_WINDOW_S: z.coerce.number().int().min(1).max(86_400).default(60),
  /** Runs accepted and not finished, over every project, past which ingress answers 503. */
  AWOOOP_MAX_BACKLOG: z.coerce.number().int().min(1).max(10_000_000).default(5000),
  /** The same per project (429); a project's `limits.maxBacklog` may only lower it. */
  AWOOOP_PROJECT_MAX_BACKLOG: z.coerce.number().int().min(1).max(10_000_000).default(1000),
  /** The `Retry-After` of a backlog refusal, in seconds. */
  AWOOOP_BACKLOG_RETRY_AFTER_S: z.coerce.number().int().min(1).max(3600).default(10),
  /** Consecutive retryable failures of a provider endpoint that open its circuit breaker. */
  AWOOOP_BREAKER_FAILURES: z.coerce.number().int().min(1).max(10_000).default(5),
  /** A failure older than this (ms) no longer counts toward a breaker's run of failures. */
  AWOOOP_BREAKER_WINDOW_MS: z.coerce.number().int().min(100).max(3_600_000).default(60_000),
  /** How long an open breaker waits (ms) before it admits a probe call. */
  AWOOOP_BREAKER_COOLDOWN_MS: z.coerce.number().int().min(100).max(3_600_000).default(30_000),
  /** Probe calls a half-open breaker admits at once, across every process. */
  AWOOOP_BREAKER_PROBES: z.coerce.number().int().min(1).max(100).default(1),
  /**
   * `first_use`: an endpoint a route names becomes a platform resource on its first call;
   * `operator`: only endpoints registered with `awooop providers add` may be called.
   */
  AWOOOP_PROVIDER_REGISTRATION: z.enum(['first_use', 'operator']).default('first_use'),
  /** The env variables tenants' `env:` refs may read, comma-separated; none by default. */
  AWOOOP_ENV_SECRETS: z
    .string()
    .transform((v) =>
      v
        .split(',')
        .map((name) => name.trim())
        .filter((name) => name !== ''),
    )
    .pipe(
      z.array(
        z
          .string()
          .regex(/^[A-Za-z_][A-Za-z0-9_.-]{0,127}$/, 'must be env variable names, comma-separated')
          .refine((name) => !name.startsWith('AWOOOP_') && !PLATFORM_NAMES.has(name), {
            error: (issue) =>
              `${String(issue.input)} is the platform's own configuration, not a tenant's`,
          }),
      ),
    )
    .default([]),
});

/** URLs whose password is masked in the serialized config. */
const URL_NAMES = new Set([
  'DATABASE_URL',
  'REDIS_URL',
  'AWOOOP_DB_RUNTIME_URL',
  'AWOOOP_DB_SWEEPER_URL',
  'AWOOOP_DB_PLATFORM_URL',
]);

/** Parsed, validated configuration. Secrets are present but never serialized. */
export type Config = z.infer<typeof EnvSchema> & { toJSON(): Record<string, unknown> };

/**
 * Reads the whitelisted env variables once. A bad value throws an error naming the variable
 * and what is wrong with it, never the value itself when the variable holds a secret.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const picked = Object.fromEntries(
    Object.keys(EnvSchema.shape)
      .filter((name) => env[name] !== undefined && env[name] !== '')
      .map((name) => [name, env[name]]),
  );
  const result = EnvSchema.safeParse(picked);
  if (!result.success) {
    const lines = result.error.issues.map((issue) => {
      const name = String(issue.path[0] ?? '(env)');
      const message = SECRET_NAMES.has(name)
        ? issue.message.replace(/".*"/g, '"***"')
        : issue.message;
      return `${name}: ${message}`;
    });
    throw new ConfigError(lines);
  }
  const parsed = result.data;
  const redacted = () =>
    Object.fromEntries(
      Object.entries(parsed).map(([k, v]) => [
        k,
        SECRET_NAMES.has(k) ? '[redacted]' : URL_NAMES.has(k) ? redactUrl(String(v)) : v,
      ]),
    );
  const config = { ...parsed, toJSON: redacted };
  // console.log / util.inspect show the redacted view too, not the raw fields.
  Object.defineProperty(config, Symbol.for('nodejs.util.inspect.custom'), { value: redacted });
  return config;
}

/** A URL with its password replaced, for logs. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '[unparseable url]';
  }
}

/** Raised at start when an env variable is missing or malformed. */
export class ConfigError extends Error {
  readonly issues: readonly string[];
  constructor(issues: readonly string[]) {
    super(`invalid configuration:\n  ${issues.join('\n  ')}`);
    this.name = 'ConfigError';
    this.issues = issues;
  }
}

/** The secret key's 32 bytes (hex or base64), or null when none is configured. */
export function secretKeyBytes(config: Pick<Config, 'AWOOOP_SECRET_KEY'>): Buffer | null {
  const v = config.AWOOOP_SECRET_KEY;
  if (!v) return null;
  return /^[0-9a-fA-F]{64}$/.test(v) ? Buffer.from(v, 'hex') : Buffer.from(v, 'base64');
}

/**
 * Where a process of kind `login` connects: its configured URL, else DATABASE_URL's server
 * and database as that login role. DATABASE_URL itself (the owner) is for migrations only.
 */
export function databaseUrlFor(
  config: Pick<
    Config,
    'DATABASE_URL' | 'AWOOOP_DB_RUNTIME_URL' | 'AWOOOP_DB_SWEEPER_URL' | 'AWOOOP_DB_PLATFORM_URL'
  >,
  login: Login,
): string {
  const configured = {
    app: config.AWOOOP_DB_RUNTIME_URL,
    sweeper: config.AWOOOP_DB_SWEEPER_URL,
    platform: config.AWOOOP_DB_PLATFORM_URL,
  }[login];
  return configured ?? loginUrl(ownerUrl(config), login);
}

/**
 * DATABASE_URL, the owner's URL; a ConfigError naming it when it is unset (the command line
 * sets it from the embedded server `npm start` runs, when one runs).
 */
export function ownerUrl(config: Pick<Config, 'DATABASE_URL'>): string {
  if (config.DATABASE_URL === undefined)
    throw new ConfigError([
      'DATABASE_URL: not set, and no embedded Postgres is running from .awooop/postgres: run `npm start` (it starts one), or set DATABASE_URL to a Postgres server',
    ]);
  return config.DATABASE_URL;
}
