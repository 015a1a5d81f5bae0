import { AppError, NonRetryableError, RetryAfterError } from '../../errors.ts';
import { retryAfterMs } from '../../retryAfterMs.ts';

/** How long one callback may take before it counts as failed (and is retried). */
const CALLBACK_TIMEOUT_MS = 10_000;

/**
 * POSTs `payload` as JSON to an API channel's callback URL with an `Idempotency-Key` header,
 * so a receiver can drop the repeat a retry may cause. Any 2xx is success. 429, 5xx, a
 * timeout (10 s) or a network failure throw a retryable `CALLBACK_UNAVAILABLE` (a
 * {@link RetryAfterError} when a 429 says how long to wait); any other answer, redirects
 * included (they are not followed), throws {@link NonRetryableError} `CALLBACK_REJECTED`.
 * Error messages name the host only: a callback URL may carry a token in its query.
 */
export async function postCallback(
  url: string,
  payload: object,
  idempotencyKey: string,
  signal?: AbortSignal,
): Promise<void> {
  const host = hostOf(url);
  const timeout = AbortSignal.timeout(CALLBACK_TIMEOUT_MS);
  let response: Response;
  try {
    response = await fetch(url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        accept: 'application/json',
        'idempotency-key': idempotencyKey,
      },
      body: JSON.stringify(payload),
      redirect: 'manual',
      signal: signal === undefined ? timeout : AbortSignal.any([signal, timeout]),
    });
  } catch (error) {
    const reason = timeout.aborted
      ? `no answer within ${CALLBACK_TIMEOUT_MS} ms`
      : error instanceof Error
        ? (errorCause(error) ?? error.message)
        : String(error);
    throw new AppError('CALLBACK_UNAVAILABLE', `callback to ${host} failed: ${reason}`, {
      status: 503,
      detail: { host },
    });
  }
  // The body is not used; dropping it frees the connection for reuse.
  await response.body?.cancel().catch(() => undefined);
  const { status } = response;
  if (status >= 200 && status < 300) return;
  const detail = { host, httpStatus: status };
  if (status === 429) {
    const header = response.headers.get('retry-after');
    if (header !== null) {
      throw new RetryAfterError(
        'CALLBACK_UNAVAILABLE',
        `callback to ${host} was rate limited`,
        retryAfterMs(header) ?? 1000,
      );
    }
  }
  if (status === 429 || status >= 500) {
    throw new AppError('CALLBACK_UNAVAILABLE', `callback to ${host} answered ${status}`, {
      status: 503,
      detail,
    });
  }
  throw new NonRetryableError('CALLBACK_REJECTED', `callback to ${host} answered ${status}`, {
    status: 502,
    detail,
  });
}

function hostOf(url: string): string {
  try {
    return new URL(url).host;
  } catch {
    throw new NonRetryableError('CALLBACK_REJECTED', 'callback URL is not a valid URL');
  }
}

/** undici reports `fetch failed` and puts the reason (ECONNREFUSED, ...) in `cause`. */
function errorCause(error: Error): string | undefined {
  const cause: unknown = error.cause;
  return cause instanceof Error ? `${error.message} (${cause.message})` : undefined;
}
