import type { Logger } from 'pino';
import type { DatabasePool } from 'slonik';

/**
 * What every service and stage receives first: built once per entry point in `ops/`, never a
 * module singleton, so tests build their own. Later stages add their clients here.
 */
export type Context = {
  pool: DatabasePool;
  logger: Logger;
};
