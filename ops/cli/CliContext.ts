import { userInfo } from 'node:os';
import type { Context } from '../../pipeline/context.ts';
import { createDbPool } from '../../db/createDbPool.ts';
import { createLogger, type Logger } from '../createLogger.ts';
import { databaseUrlFor, type Config } from '../loadConfig.ts';

/**
 * Who runs a CLI command. The CLI connects with the platform's database login, so whoever
 * runs it without a key is the platform operator: every command is open to them. With a
 * project API key (`--key`, `AWOOOP_API_KEY`) it acts as that key, with what the permission
 * table grants its roles, in its project only (`authorizeCommand`).
 */
export type CliCaller =
  | { kind: 'platform' }
  | { kind: 'key'; projectId: string; keyId: string; roles: readonly string[] };

/** What a CLI command gets: config, who is acting, an output sink, and the service context. */
export type CliContext = {
  config: Config;
  logger: Logger;
  actor: string;
  /** Who is acting, for the permission table; the platform operator until a key is checked. */
  caller: CliCaller;
  print: (line?: string) => void;
  /**
   * The service context; the pool opens on first use, so `awooop hash` needs no database. It
   * connects as the platform login, the one that `withPlatform` can enter the platform role
   * from.
   */
  connect: () => Promise<Context>;
  close: () => Promise<void>;
};

/** Builds the CLI's context once per invocation. */
export function createCliContext(config: Config, actorOption?: string): CliContext {
  const logger = createLogger({
    level: config.LOG_LEVEL === 'info' ? 'warn' : config.LOG_LEVEL,
    name: 'awooop-cli',
    destination: process.stderr,
  });
  let context: Promise<Context> | undefined;
  return {
    config,
    logger,
    actor: actorOption ?? config.AWOOOP_ACTOR ?? `cli:${currentUser()}`,
    caller: { kind: 'platform' },
    print: (line = '') => process.stdout.write(`${line}\n`),
    connect: () =>
      (context ??= createDbPool(databaseUrlFor(config, 'platform'), {
        applicationName: 'awooop-cli',
        maxPoolSize: 2,
      }).then((pool) => ({ pool, logger }))),
    close: async () => {
      if (context) await (await context).pool.end();
    },
  };
}

function currentUser(): string {
  try {
    return userInfo().username;
  } catch {
    return 'unknown';
  }
}
