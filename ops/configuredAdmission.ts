import { createAdmission, type Admission } from '../pipeline/admission/createAdmission.ts';
import type { StageContext } from '../pipeline/StageContext.ts';
import type { Config } from './loadConfig.ts';

/** The admission check of a process that takes messages in (`web`, `channels`), from its config. */
export function configuredAdmission(
  config: Pick<
    Config,
    | 'AWOOOP_REDIS_PREFIX'
    | 'AWOOOP_MAX_BACKLOG'
    | 'AWOOOP_PROJECT_MAX_BACKLOG'
    | 'AWOOOP_BACKLOG_RETRY_AFTER_S'
  >,
  ctx: Pick<StageContext, 'redis' | 'pool' | 'contracts' | 'logger'>,
): Admission {
  return createAdmission({
    redis: ctx.redis,
    prefix: config.AWOOOP_REDIS_PREFIX,
    pool: ctx.pool,
    contracts: ctx.contracts,
    logger: ctx.logger,
    bounds: {
      maxBacklog: config.AWOOOP_MAX_BACKLOG,
      projectMaxBacklog: config.AWOOOP_PROJECT_MAX_BACKLOG,
      backlogRetryAfterS: config.AWOOOP_BACKLOG_RETRY_AFTER_S,
    },
  });
}
