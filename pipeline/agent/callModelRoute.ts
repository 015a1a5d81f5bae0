import type { Logger } from 'pino';
import type { ModelTarget } from '../contracts/policyContract.ts';
import { AppError, NonRetryableError, RetryAfterError } from '../errors.ts';
import type { ProviderHealth } from '../providerHealth/createProviderHealth.ts';
import type { ModelRequest, ModelResult, ProviderDeps } from './modelTypes.ts';
import { ProviderError } from './ProviderError.ts';
import { anthropic } from './providers/anthropic.ts';
import { echo } from './providers/echo.ts';
import { openaiCompatible } from './providers/openaiCompatible.ts';
import type { ErrorCode } from '../errorCodes.ts';

/** One target tried: which, how long, and the failure code when it failed. */
export type ModelAttempt = { provider: string; model: string; code?: ErrorCode; ms: number };

/**
 * Calls a model route: each target in order (primary, then fallbacks) until one answers. Any
 * {@link ProviderError} moves on to the next target; the caller's abort stops at once and is
 * rethrown. When every target fails the error is `MODEL_UNAVAILABLE` (status 503, retried with
 * backoff; a {@link RetryAfterError} spending an attempt when every target that could recover
 * sent `Retry-After`, so the next attempt waits the soonest of those) if any failure could
 * pass with time, else `MODEL_REJECTED` (not retried). Both carry
 * `detail.attempts`; their messages are short and never quote a provider.
 *
 * With `health`, a target whose endpoint's breaker is open is skipped at once (recorded as a
 * `MODEL_CIRCUIT_OPEN` attempt, no call made) and every call's outcome is recorded; a route
 * whose every target was skipped fails `MODEL_CIRCUIT_OPEN`, retried like `MODEL_UNAVAILABLE`.
 */
export async function callModelRoute(
  targets: readonly ModelTarget[],
  request: ModelRequest,
  deps: ProviderDeps & { logger?: Logger; health?: ProviderHealth | undefined },
): Promise<ModelResult & { attempts: ModelAttempt[] }> {
  const { logger, health, ...providerDeps } = deps;
  const attempts: ModelAttempt[] = [];
  const failures: ProviderError[] = [];
  for (const target of targets) {
    request.signal?.throwIfAborted();
    // Provider health: an open breaker skips its target without a call (so without a wait).
    const admission = (await health?.admit(target)) ?? null;
    if (admission && !admission.admitted) {
      const { code, message, retryable, retryAfterMs } = admission;
      const { provider, model } = target;
      attempts.push({ provider, model, code, ms: 0 });
      failures.push(
        new ProviderError(code, message, {
          provider,
          model,
          retryable,
          ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
        }),
      );
      continue;
    }
    const started = performance.now();
    const elapsed = () => Math.round(performance.now() - started);
    try {
      const result = await callTarget(target, request, providerDeps);
      if (admission) await health?.settle(admission, null);
      attempts.push({ provider: target.provider, model: target.model, ms: elapsed() });
      return { ...result, attempts };
    } catch (error) {
      if (request.signal?.aborted) throw request.signal.reason;
      if (!(error instanceof ProviderError)) throw error;
      if (admission) await health?.settle(admission, error);
      const ms = elapsed();
      attempts.push({ provider: target.provider, model: target.model, code: error.code, ms });
      failures.push(error);
      logger?.warn(
        { traceId: request.traceId, ...error.detail, code: error.code, ms, err: error.message },
        'model target failed',
      );
    }
  }

  const retryable = failures.filter((f) => f.retryable);
  if (retryable.length > 0) {
    const waits = failures.flatMap((f) => (f.retryAfterMs === undefined ? [] : [f.retryAfterMs]));
    const code = failures.every((f) => f.code === 'MODEL_CIRCUIT_OPEN')
      ? 'MODEL_CIRCUIT_OPEN'
      : 'MODEL_UNAVAILABLE';
    const message = 'No model on this route is available right now.';
    const options = {
      cause: failures.at(-1),
      detail: { attempts, ...(waits.length > 0 ? { retryAfterMs: Math.min(...waits) } : {}) },
    };
    // Every target that may recover said when: the next attempt waits for the soonest of
    // them. One that gave no time (a 5xx, a timeout) may be back at the usual backoff.
    if (retryable.every((f) => f.retryAfterMs !== undefined)) {
      const soonest = Math.min(...retryable.map((f) => f.retryAfterMs ?? 0));
      throw new RetryAfterError(code, message, soonest, {
        ...options,
        spendsAttempt: true,
      });
    }
    throw new AppError(code, message, { status: 503, ...options });
  }
  throw new NonRetryableError(
    'MODEL_REJECTED',
    failures.length === 0
      ? 'No model is configured for this route.'
      : 'Every model on this route refused the request; check the route and its API keys.',
    {
      status: 502,
      ...(failures.length > 0 ? { cause: failures.at(-1) } : {}),
      detail: { attempts },
    },
  );
}

function callTarget(
  target: ModelTarget,
  request: ModelRequest,
  deps: ProviderDeps,
): Promise<ModelResult> | ModelResult {
  switch (target.provider) {
    case 'echo':
      return echo(target, request);
    case 'openai_compatible':
      return openaiCompatible(target, request, deps);
    case 'anthropic':
      return anthropic(target, request, deps);
  }
}
