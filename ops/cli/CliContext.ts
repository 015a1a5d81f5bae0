import { userInfo } from 'node:os';
import type { Context } from '../../pipeline/context.ts';
import { createDbPool } from '../../db/createDbPool.ts';
import { createLogger, type Logger } from '../createLogger.ts';
import { databaseUrlFor, type Config } from '../loadConfig.ts';

/** What a CLI command gets: config, who is acting, an output sink, and the service context. */
export type CliContext = {
  config: Config;
  logger: Logger;
  actor: string;
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
