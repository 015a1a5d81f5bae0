import type { Redis } from 'ioredis';
import {
  findProviderEndpoint,
  moveProviderBreaker,
  registerProviderEndpoint,
  type BreakerMove,
  type ProviderEndpoint,
} from '../../db/providerEndpoints.ts';
import type { AuditAction } from '../contracts/auditActions.ts';
import type { ModelTarget } from '../contracts/policyContract.ts';
import type { Context } from '../context.ts';
import type { ErrorCode } from '../errorCodes.ts';
import { endpointOf } from './endpointOf.ts';

/** Who moves a breaker on its own, in the platform's audit trail. */
export const PROVIDER_HEALTH_ACTOR = 'platform:provider-health';

/** How the breakers trip and recover. */
export type ProviderHealthOptions = {
  /** Consecutive retryable failures (across every process) that open a breaker. @defaultValue 5 */
  failures: number;
  /** A failure older than this no longer counts toward the run of failures. @defaultValue 60000 */
  windowMs: number;
  /** How long a breaker stays open before probes are admitted. @defaultValue 30000 */
  cooldownMs: number;
  /** Probe calls admitted at once while half-open (across every process). @defaultValue 1 */
  probes: number;
  /** How long a process trusts its cached copy of a breaker's row. @defaultValue 1000 */
  refreshMs: number;
  /**
   * Which endpoints a route may call: `first_use` registers any endpoint a route names on its
   * first call (audited); `operator` calls only endpoints an operator registered
   * (`awooop providers add`), and skips any other as `MODEL_ENDPOINT_NOT_ALLOWED`.
   * @defaultValue 'first_use'
   */
  registration: 'first_use' | 'operator';
};

export const DEFAULT_PROVIDER_HEALTH: ProviderHealthOptions = {
  failures: 5,
  windowMs: 60_000,
  cooldownMs: 30_000,
  probes: 1,
  refreshMs: 1000,
  registration: 'first_use',
};

/** Whether a target may be called now, and as what. */
export type Admission =
  | { admitted: true; endpoint: ProviderEndpoint; probe: boolean; target: ModelTarget }
  | {
      admitted: false;
      endpoint: ProviderEndpoint | null;
      /** Why, as the attempt's code: `MODEL_CIRCUIT_OPEN` or `MODEL_ENDPOINT_NOT_ALLOWED`. */
      code: ErrorCode;
      /** For logs: the target and the endpoint's state, never a provider's words. */
      message: string;
      /** Whether the route may succeed later (an open breaker) or never as set up. */
      retryable: boolean;
      /** When an open breaker admits a probe, from now. */
      retryAfterMs?: number;
    };

/** How an admitted call ended, as far as health cares (a `ProviderError` is one). */
export type CallFailure = { code: ErrorCode; retryable: boolean };

/** The breakers of the provider endpoints, as a model route uses them. */
export type ProviderHealth = {
  /**
   * Whether `target` may be called: null when it is not behind a breaker (the offline `echo`)
   * or provider health cannot be read now (the call is made: health never stops a call by
   * failing itself). Refused: an error to record in place of the call.
   */
  admit(target: ModelTarget): Promise<Admission | null>;
  /** Records how an admitted call ended: null for an answer. Never throws. */
  settle(admission: Admission & { admitted: true }, error: CallFailure | null): Promise<void>;
};

// One round trip: count, and start the key's life on the first count only, so a stream of
// later counts never keeps an abandoned key alive.
const COUNT_SCRIPT = `local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n`;

/**
 * Provider health: a circuit breaker per provider endpoint, shared by every process. The
 * Postgres row (`provider_endpoints`) is the breaker's truth and changes only on a
 * transition, each with its audit row; a process keeps a copy for `refreshMs`, so a closed
 * breaker costs no database round trip per call. Consecutive failures are counted in Redis
 * (one key per endpoint and breaker version, so every process adds to the same count and a
 * transition starts a fresh one); an answer clears the count. Retryable failures count (a
 * network error, a timeout, 408/409/429, 5xx, an unreadable answer); a refusal of the request
 * (another 4xx) is an answer from a working endpoint.
 *
 * closed → open after `failures` in a row; open → half_open once `cooldownMs` has passed (the
 * first process to see it moves it); half_open admits `probes` calls: an answer closes it, a
 * failure opens it again. An operator's hold (`forced`) stays open until an operator moves it.
 */
export function createProviderHealth(
  ctx: Context & { redis: Redis; redisPrefix: string; actor: string; now: () => number },
  options: Partial<ProviderHealthOptions> = {},
): ProviderHealth {
  const opts = { ...DEFAULT_PROVIDER_HEALTH, ...options };
  // null: not registered (operator registration), remembered as briefly as a row.
  const cache = new Map<string, { row: ProviderEndpoint | null; readAt: number }>();
  const loading = new Map<string, Promise<ProviderEndpoint | null>>();
  const keyOf = (row: ProviderEndpoint, what: string) =>
    `${ctx.redisPrefix}:breaker:${row.endpointId}:${row.version}:${what}`;

  const remember = (row: ProviderEndpoint) => {
    const key = `${row.provider} ${row.baseUrl}`;
    const held = cache.get(key);
    if (!held?.row || held.row.version <= row.version) cache.set(key, { row, readAt: ctx.now() });
  };

  function read(endpoint: { provider: string; baseUrl: string }, fresh = false) {
    const key = `${endpoint.provider} ${endpoint.baseUrl}`;
    const held = cache.get(key);
    if (!fresh && held && ctx.now() - held.readAt < opts.refreshMs) return held.row;
    // Callers at the same moment share one read.
    let pending = loading.get(key);
    if (!pending) {
      pending = (async () => {
        const known = await findProviderEndpoint(ctx.pool, endpoint);
        if (!known && opts.registration === 'operator') {
          cache.set(key, { row: null, readAt: ctx.now() });
          return null;
        }
        const row =
          known ??
          (await registerProviderEndpoint(ctx.pool, {
            ...endpoint,
            actor: PROVIDER_HEALTH_ACTOR,
            reason: `first use by a model route (${ctx.actor})`,
          })) ??
          // Another process registered it between the two statements.
          (await findProviderEndpoint(ctx.pool, endpoint));
        if (!row) throw new Error(`provider endpoint ${key} could not be registered`);
        remember(row);
        return row;
      })().finally(() => loading.delete(key));
      loading.set(key, pending);
    }
    return pending;
  }

  async function move(
    row: ProviderEndpoint,
    action: AuditAction,
    to: BreakerMove,
    reason: string,
  ): Promise<ProviderEndpoint | null> {
    const moved = await moveProviderBreaker(ctx.pool, row, to, {
      actor: PROVIDER_HEALTH_ACTOR,
      action,
      cooldownMs: opts.cooldownMs,
      detail: {
        from: row.state,
        reason,
        failures: to.failures,
        threshold: opts.failures,
        ...(to.lastError ? { lastError: to.lastError } : {}),
        process: ctx.actor,
      },
    });
    if (moved) {
      remember(moved);
      const log = moved.state === 'open' ? ctx.logger.warn : ctx.logger.info;
      log.call(
        ctx.logger,
        {
          provider: moved.provider,
          endpoint: moved.baseUrl,
          from: row.state,
          to: moved.state,
          failures: to.failures,
        },
        `provider breaker ${moved.state}`,
      );
    } else {
      // Another process moved it first: read the row again on the next call.
      cache.delete(`${row.provider} ${row.baseUrl}`);
    }
    return moved;
  }

  const count = async (key: string, ttlMs: number) =>
    Number(await ctx.redis.eval(COUNT_SCRIPT, 1, key, String(ttlMs)));

  const refused = (target: ModelTarget, row: ProviderEndpoint): Admission => {
    const waitMs =
      row.state === 'open' && !row.forced && row.retryAt !== null
        ? Math.max(0, row.retryAt - ctx.now())
        : undefined;
    return {
      admitted: false,
      endpoint: row,
      code: 'MODEL_CIRCUIT_OPEN',
      message: `${target.provider} model ${target.model}: the breaker of ${row.baseUrl} is ${row.forced ? 'held open by an operator' : row.state.replace('_', '-')}`,
      retryable: true,
      ...(waitMs === undefined ? {} : { retryAfterMs: waitMs }),
    };
  };

  const notAllowed = (target: ModelTarget, baseUrl: string): Admission => ({
    admitted: false,
    endpoint: null,
    code: 'MODEL_ENDPOINT_NOT_ALLOWED',
    message: `${target.provider} model ${target.model}: ${baseUrl} is not a registered provider endpoint`,
    retryable: false,
  });

  return {
    async admit(target) {
      const endpoint = endpointOf(target);
      if (!endpoint) return null;
      try {
        let row = await read(endpoint);
        if (!row) return notAllowed(target, endpoint.baseUrl);
        if (
          row.state === 'open' &&
          !row.forced &&
          row.retryAt !== null &&
          ctx.now() >= row.retryAt
        ) {
          // Every process past the cool-down tries; the version check lets one move it.
          row =
            (await move(
              row,
              'provider.breaker.half_opened',
              { ...row, state: 'half_open', forced: false, openedCount: 'keep' },
              `cool-down of ${opts.cooldownMs} ms passed`,
            )) ?? (await read(endpoint, true));
          if (!row) return notAllowed(target, endpoint.baseUrl);
        }
        if (row.state === 'closed') return { admitted: true, endpoint: row, probe: false, target };
        if (row.state === 'half_open') {
          const timeoutMs = 'timeoutMs' in target ? target.timeoutMs : 60_000;
          // A probe slot outlives its call's timeout, so a process that died mid-probe frees it.
          const taken = await count(keyOf(row, 'probes'), timeoutMs + 5000);
          if (taken <= opts.probes) return { admitted: true, endpoint: row, probe: true, target };
        }
        return refused(target, row);
      } catch (error) {
        ctx.logger.warn(
          {
            provider: endpoint.provider,
            endpoint: endpoint.baseUrl,
            err: (error as Error).message,
          },
          'provider health unavailable: calling without the breaker',
        );
        return null;
      }
    },

    async settle(admission, error) {
      const row = admission.endpoint;
      try {
        if (error === null || !error.retryable) {
          if (admission.probe)
            await move(
              row,
              'provider.breaker.closed',
              {
                state: 'closed',
                forced: false,
                failures: 0,
                lastError: row.lastError,
                openedCount: 'keep',
              },
              'a probe call was answered',
            );
          // An answer ends the run of failures.
          else await ctx.redis.del(keyOf(row, 'failures'));
          return;
        }
        if (admission.probe) {
          await move(
            row,
            'provider.breaker.opened',
            {
              state: 'open',
              forced: false,
              failures: row.failures + 1,
              lastError: error.code,
              openedCount: 'bump',
            },
            `a probe call failed (${error.code})`,
          );
          return;
        }
        const failures = await count(keyOf(row, 'failures'), opts.windowMs);
        if (failures >= opts.failures && row.state === 'closed')
          await move(
            row,
            'provider.breaker.opened',
            { state: 'open', forced: false, failures, lastError: error.code, openedCount: 'bump' },
            `${failures} consecutive failures (${error.code})`,
          );
      } catch (failure) {
        ctx.logger.warn(
          { provider: row.provider, endpoint: row.baseUrl, err: (failure as Error).message },
          'provider health not recorded',
        );
      }
    },
  };
}
