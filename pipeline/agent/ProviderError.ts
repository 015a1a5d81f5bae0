import type { ErrorCode } from '../errorCodes.ts';
import { AppError } from '../errors.ts';

/**
 * One model target failed. `retryable` says whether the same call could succeed later
 * (network, timeout, 408, 409, 429, 5xx, an unreadable answer) or never will as configured
 * (a bad key, a bad request). The message is for logs: it never holds the API key or more
 * than a short, redacted excerpt of what the provider said.
 */
export class ProviderError extends AppError {
  /** Whether the same call could succeed later. */
  readonly retryable: boolean;
  /** The target's provider, e.g. `anthropic`. */
  readonly provider: string;
  /** The HTTP status the provider answered with, when it answered at all. */
  readonly httpStatus?: number;
  /** How long the provider asked us to wait (`retry-after`), in milliseconds. */
  readonly retryAfterMs?: number;

  constructor(
    code: ErrorCode,
    message: string,
    options: {
      provider: string;
      model: string;
      retryable: boolean;
      httpStatus?: number;
      retryAfterMs?: number;
      cause?: unknown;
    },
  ) {
    const { provider, model, retryable, httpStatus, retryAfterMs, cause } = options;
    super(code, message, {
      ...(cause === undefined ? {} : { cause }),
      status: 502,
      detail: {
        provider,
        model,
        retryable,
        ...(httpStatus === undefined ? {} : { httpStatus }),
        ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
      },
    });
    this.retryable = retryable;
    this.provider = provider;
    if (httpStatus !== undefined) this.httpStatus = httpStatus;
    if (retryAfterMs !== undefined) this.retryAfterMs = retryAfterMs;
  }
}
