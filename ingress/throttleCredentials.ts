import { isIPv6 } from 'node:net';
import type { Redis } from 'ioredis';
import type { Middleware } from 'koa';
import type { Logger } from 'pino';
import { ProjectId } from '../pipeline/contracts/common.ts';
import { AppError } from '../pipeline/errors.ts';

/** How many failed credential attempts are let through before a source is refused. */
export type CredentialLimits = {
  /** Key prefix of the counters: the app's `AWOOOP_REDIS_PREFIX`. */
  prefix: string;
  /** Failed attempts one source address (an IPv6 /64) may make per window. @defaultValue 20 */
  perSource?: number;
  /**
   * Failed attempts against one project (its API, MCP and webhook credentials; `platform` for
   * the admin and viewer tokens), from all sources, per window; past it, a source that has
   * failed in the window is refused at once. Sources with no failure are not. @defaultValue 100
   */
  perProject?: number;
  /** The window, in seconds, counted from a counter's first failure. @defaultValue 60 */
  windowSeconds?: number;
  /** The longest a check waits for Redis before letting the request through. @defaultValue 250 */
  timeoutMs?: number;
};

/**
 * Limits guessing of credentials (API and MCP keys, webhook secrets, admin and viewer tokens):
 * every answer 401 to a request on a credential route counts one failure for its source
 * address and for its project, in Redis counters under `<prefix>:auth-failures:`. A source
 * past `perSource` failures, or one that has failed while its project is past `perProject`,
 * gets 429 `TOO_MANY_FAILED_ATTEMPTS` with `Retry-After` for any credential, good or bad,
 * until the window ends; nothing behind it runs. A successful request costs one Redis read
 * and is never held back. If Redis does not answer within `timeoutMs` the request goes on
 * unthrottled (logged): Redis being away must not take ingress down with it.
 */
export function throttleCredentials({
  redis,
  logger,
  prefix,
  perSource = 20,
  perProject = 100,
  windowSeconds = 60,
  timeoutMs = 250,
}: CredentialLimits & { redis: Redis; logger: Logger }): Middleware {
  const keyOf = (kind: 'source' | 'project', id: string) => `${prefix}:auth-failures:${kind}:${id}`;

  return async function throttle(ctx, next) {
    const scope = scopeOf(ctx.path);
    if (scope === undefined) {
      await next();
      return;
    }
    const source = keyOf('source', sourceOf(ctx.ip));
    const project = scope === null ? null : keyOf('project', scope);
    const keys = project ? [source, project] : [source];

    // One GET per key rather than an MGET, and one MULTI per key below: the two keys may live
    // in different slots of a Redis Cluster.
    const counts = await bounded(Promise.all(keys.map((k) => redis.get(k))), timeoutMs).catch(
      (error: unknown) => {
        logger.warn({ err: messageOf(error) }, 'credential throttle unavailable; not throttling');
        return null;
      },
    );
    if (counts) {
      const bySource = Number(counts[0] ?? 0);
      const byProject = Number(counts[1] ?? 0);
      const bySourceLimit = bySource >= perSource;
      const byProjectLimit = project !== null && bySource > 0 && byProject >= perProject;
      if (bySourceLimit || byProjectLimit) {
        // Refused until the source's window ends, or for the project's limit alone, until
        // either window ends (the source's failures or the project's count reset).
        const [sourceMs, projectMs] = await bounded(
          Promise.all(keys.map((k) => redis.pttl(k))),
          timeoutMs,
        ).catch(() => [] as number[]);
        const left = (ms: number | undefined) => (ms && ms > 0 ? ms : windowSeconds * 1000);
        const waitMs = bySourceLimit ? left(sourceMs) : Math.min(left(sourceMs), left(projectMs));
        const seconds = Math.max(1, Math.ceil(waitMs / 1000));
        ctx.set('Retry-After', String(seconds));
        throw new AppError(
          'TOO_MANY_FAILED_ATTEMPTS',
          `too many failed credential attempts from this address; retry after ${seconds} s`,
          { status: 429 },
        );
      }
    }

    let failed = false;
    try {
      await next();
      failed = ctx.status === 401;
    } catch (error) {
      failed = error instanceof AppError && error.status === 401;
      throw error;
    } finally {
      // Counted in a fixed window opened by the first failure: SET NX starts it with its
      // expiry and INCR keeps that expiry, so later failures do not slide it. A retried
      // request that fails again counts again, as it should. Not awaited: the 401 is not held
      // up by the bookkeeping.
      if (failed) {
        for (const key of keys) {
          redis
            .multi()
            .set(key, 0, 'EX', windowSeconds, 'NX')
            .incr(key)
            .exec()
            .catch((error: unknown) => {
              logger.warn({ err: messageOf(error) }, 'could not count a failed credential attempt');
            });
        }
      }
    }
  };
}

/**
 * Which credential a path checks, as the project its failures count against: the project of
 * `/v1/projects/:p/…` and `/webhooks/<channel>/:p/…`, `platform` for the queue dashboard and
 * `/metrics` (whose token, where one is required, is as much a platform credential), null for
 * a credential route with no valid project id (the source is still counted), and undefined
 * for routes that take no credential (`/healthz`, `/readyz`).
 */
function scopeOf(path: string): string | null | undefined {
  if (path === '/admin/queues' || path.startsWith('/admin/queues/')) return 'platform';
  if (path === '/metrics') return 'platform';
  const match = /^\/(?:v1\/projects|webhooks\/[^/]+)\/([^/]*)/.exec(path);
  if (!match) return undefined;
  const id = match[1]!;
  return ProjectId.safeParse(id).success ? id : null;
}

/** A source address as counted: IPv4 as is, IPv6 by its /64 (one host's usual allotment). */
function sourceOf(ip: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  if (mapped) return mapped[1]!;
  if (!isIPv6(ip)) return ip || 'unknown';
  const [head = '', tail = ''] = ip.toLowerCase().split('::');
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const groups = ip.includes('::')
    ? [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right]
    : left;
  return `${groups
    .slice(0, 4)
    .map((g) => g.replace(/^0+(?=.)/, ''))
    .join(':')}::/64`;
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

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
