import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { DatabasePool } from 'slonik';
import { withProject } from '../../db/withProject.ts';
import type { ChannelLimits } from '../contracts/channelContract.ts';
import type { ProjectLimits } from '../contracts/projectContract.ts';
import type { ErrorCode } from '../errorCodes.ts';
import type { ContractReader } from '../runs/createContractReader.ts';
import { admissionKeys } from './admissionKeys.ts';
import { ADMISSION_SCRIPT } from './admissionScript.ts';

/** The platform's own bounds (`AWOOOP_MAX_BACKLOG` and the rest). */
export type AdmissionBounds = {
  /** Runs accepted and not finished, over every project, past which ingress refuses (503). */
  maxBacklog: number;
  /** The same for one project (429); its contract's `limits.maxBacklog` may lower it. */
  projectMaxBacklog: number;
  /** The `Retry-After` of a backlog refusal, and the delay of a run absorbed past one, s. */
  backlogRetryAfterS: number;
};

/**
 * What to do with a message past a limit: `refuse` it (the channel or client sends it again
 * later; nothing is written), or `absorb` it (accept it durably and delay its run), where a
 * refusal would lose it: Discord's Gateway replays nothing, LINE without redelivery drops it.
 */
export type Overload = 'refuse' | 'absorb';

/** One request's messages, as admission counts them. */
export type AdmissionRequest = {
  projectId: string;
  accountId: string;
  /** The account's own limits (from the channel contract the caller already holds). */
  accountLimits: ChannelLimits | undefined;
  /** Each message's run id (made before the write), sender and conversation. */
  events: readonly { runId: string; senderId: string; conversationId: string }[];
  /** How long the runs may live (their deadline): a hold not released ends then. */
  runTimeoutMs: number;
  overload: Overload;
};

/** Admission's answer. */
export type AdmissionVerdict =
  | {
      kind: 'admitted';
      /** The BullMQ priority of the run's stage jobs: 1 + the project's runs held before. */
      priority: number;
      /** How long the first stage waits (absorbed past a limit), else 0. */
      delayMs: number;
    }
  | {
      kind: 'refused';
      code: ErrorCode;
      status: 429 | 503;
      retryAfterS: number;
      message: string;
    }
  /** Redis did not answer in time: let through unchecked (the durable write still decides). */
  | { kind: 'unchecked' };

/** The admission check of a process, and how to give back what a request did not use. */
export type Admission = {
  admit(request: AdmissionRequest): Promise<AdmissionVerdict>;
  /** Drops holds of run ids the write did not create (a duplicate, a failed write). */
  forget(projectId: string, runIds: readonly string[]): Promise<void>;
};

/** BullMQ's highest priority number (the lowest priority). */
const MAX_PRIORITY = 2_097_152;
/** A hold outlives its run's deadline by this much, so a run the sweeper ends is still counted. */
const HOLD_SLACK_MS = 60_000;

/**
 * Admission at ingress: per-minute rates for the project (its contract's `limits`), the
 * account, one sender and one conversation (the channel contract's `limits`), and the backlog
 * bounds of the project and the platform, all in one Redis script before anything is written.
 * The project's limits are read from its active contract, cached for `ttlMs`. If Redis does
 * not answer within `timeoutMs`, the request is let through unchecked and logged: limits fail
 * open, since the durable write, not Redis, is what accepting means (and Redis away also
 * means no queue is growing).
 */
export function createAdmission({
  redis,
  prefix,
  pool,
  contracts,
  logger,
  bounds,
  ttlMs = 5000,
  timeoutMs = 250,
  now = Date.now,
}: {
  redis: Redis;
  prefix: string;
  pool: DatabasePool;
  contracts: ContractReader;
  logger: Logger;
  bounds: AdmissionBounds;
  /** How long a project's limits are cached. @defaultValue 5000 */
  ttlMs?: number;
  /** The longest a check waits for Redis before letting the request through. @defaultValue 250 */
  timeoutMs?: number;
  now?: () => number;
}): Admission {
  const cache = new Map<string, { limits: ProjectLimits | undefined; until: number }>();
  const projectLimits = async (projectId: string): Promise<ProjectLimits | undefined> => {
    const hit = cache.get(projectId);
    if (hit && hit.until >= now()) return hit.limits;
    const active = await withProject(pool, projectId, (tx) =>
      contracts.active(tx, { projectId, kind: 'project', name: 'project' }),
    );
    const limits = active?.body.limits;
    if (cache.size > 10_000) cache.clear();
    cache.set(projectId, { limits, until: now() + ttlMs });
    return limits;
  };

  return {
    async admit(request) {
      if (request.events.length === 0) return { kind: 'unchecked' };
      const project = await projectLimits(request.projectId);
      const rates = rateChecks(prefix, request, project);
      const projectMax = Math.min(
        bounds.projectMaxBacklog,
        project?.maxBacklog ?? bounds.projectMaxBacklog,
      );
      const at = now();
      const keys = [
        ...rates.map((r) => r.key),
        admissionKeys.projectRuns(prefix, request.projectId),
        admissionKeys.allRuns(prefix),
        admissionKeys.refusals(prefix),
      ];
      const args = [
        at,
        rates.length,
        request.overload === 'absorb' ? 1 : 0,
        projectMax,
        bounds.maxBacklog,
        at + request.runTimeoutMs + HOLD_SLACK_MS,
        bounds.backlogRetryAfterS * 1000,
        request.projectId,
        ...rates.flatMap((r) => [60_000 / r.perMinute, burstOf(r.perMinute), r.count]),
        ...request.events.map((e) => e.runId),
      ].map(String);
      let result: [number, number, number];
      try {
        result = (await bounded(runScript(redis, keys, args), timeoutMs)) as [
          number,
          number,
          number,
        ];
      } catch (error) {
        logger.warn(
          { projectId: request.projectId, err: (error as Error).message },
          'admission unavailable; not limiting',
        );
        return { kind: 'unchecked' };
      }
      const [status, a, b] = result;
      if (status === 0) {
        return { kind: 'admitted', priority: Math.min(MAX_PRIORITY, a + 1), delayMs: b };
      }
      if (status === 1) {
        const rate = rates[a - 1]!;
        const retryAfterS = Math.max(1, Math.ceil(b / 1000));
        return {
          kind: 'refused',
          code: 'TOO_MANY_MESSAGES',
          status: 429,
          retryAfterS,
          message: `more than ${rate.perMinute} messages a minute ${rate.what}; retry after ${retryAfterS} s`,
        };
      }
      const retryAfterS = bounds.backlogRetryAfterS;
      return status === 2
        ? {
            kind: 'refused',
            code: 'PROJECT_BACKLOG_FULL',
            status: 429,
            retryAfterS,
            message: `project "${request.projectId}" has ${a} runs unfinished, its most (${projectMax}); retry after ${retryAfterS} s`,
          }
        : {
            kind: 'refused',
            code: 'PLATFORM_BUSY',
            status: 503,
            retryAfterS,
            message: `the platform has ${a} runs unfinished, its most; retry after ${retryAfterS} s`,
          };
    },
    async forget(projectId, runIds) {
      if (runIds.length === 0) return;
      await bounded(
        redis
          .multi()
          .zrem(admissionKeys.projectRuns(prefix, projectId), ...runIds)
          .zrem(admissionKeys.allRuns(prefix), ...runIds)
          .exec(),
        timeoutMs,
      ).catch(() => {});
    },
  };
}

/**
 * How many messages a limit takes at once before its steady rate applies: two seconds'
 * worth, at least 5 (a person sends a few lines in a row), at most the limit. The burst is
 * what a flooding tenant puts in front of the workers at once: a tenth of a minute's worth
 * (30 runs at 300 a minute) held another tenant's p99 at 5.6x its own for that second.
 */
export function burstOf(perMinute: number): number {
  return Math.min(perMinute, Math.max(5, Math.ceil(perMinute / 30)));
}

type RateCheck = { key: string; perMinute: number; count: number; what: string };

/** The rate limits one request touches, each with how many of its messages count on it. */
function rateChecks(
  prefix: string,
  request: AdmissionRequest,
  project: ProjectLimits | undefined,
): RateCheck[] {
  const n = request.events.length;
  const { projectId: p, accountId: a, accountLimits: account } = request;
  const checks: RateCheck[] = [];
  if (project?.messagesPerMinute !== undefined) {
    checks.push({
      key: admissionKeys.rate(prefix, `p:${p}`),
      perMinute: project.messagesPerMinute,
      count: n,
      what: 'for the project',
    });
  }
  if (account?.messagesPerMinute !== undefined) {
    checks.push({
      key: admissionKeys.rate(prefix, `a:${p}:${a}`),
      perMinute: account.messagesPerMinute,
      count: n,
      what: `on account "${a}"`,
    });
  }
  const per = (
    limit: number | undefined,
    kind: 's' | 'c',
    idOf: (e: AdmissionRequest['events'][number]) => string,
    what: string,
  ) => {
    if (limit === undefined) return;
    const counts = new Map<string, number>();
    for (const e of request.events) counts.set(idOf(e), (counts.get(idOf(e)) ?? 0) + 1);
    for (const [id, count] of counts) {
      checks.push({
        key: admissionKeys.rate(prefix, `${kind}:${p}:${a}:${id}`),
        perMinute: limit,
        count,
        what,
      });
    }
  };
  per(account?.perSenderPerMinute, 's', (e) => e.senderId, 'from this sender');
  per(account?.perConversationPerMinute, 'c', (e) => e.conversationId, 'in this conversation');
  return checks;
}

const SCRIPT_SHA = createHash('sha1').update(ADMISSION_SCRIPT).digest('hex');

/** EVALSHA, and EVAL the first time a Redis has not seen the script (or after a flush). */
async function runScript(redis: Redis, keys: string[], args: string[]): Promise<unknown> {
  try {
    return await redis.evalsha(SCRIPT_SHA, keys.length, ...keys, ...args);
  } catch (error) {
    if (!String((error as Error).message).startsWith('NOSCRIPT')) throw error;
    return redis.eval(ADMISSION_SCRIPT, keys.length, ...keys, ...args);
  }
}

function bounded<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`redis did not answer in ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}
