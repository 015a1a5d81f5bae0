import type { ErrorCode } from './errorCodes.ts';
export type { ErrorCode } from './errorCodes.ts';

/**
 * The error tree. Every error the platform raises on purpose is an {@link AppError} with a
 * stable SCREAMING_SNAKE `code`; subclasses say how a caller should handle it, not where it
 * came from. The HTTP edge maps them to `{ error: { code, message } }` by `status`.
 */
export class AppError extends Error {
  /** Stable, machine-readable code that crosses process and network borders. */
  readonly code: ErrorCode;
  /** HTTP status the edge answers with when this error reaches it. */
  readonly status: number;
  /** Structured, non-secret context for logs (never user input verbatim). */
  readonly detail: Readonly<Record<string, unknown>>;

  constructor(
    code: ErrorCode,
    message: string,
    options: { cause?: unknown; status?: number; detail?: Record<string, unknown> } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.status = options.status ?? 500;
    this.detail = options.detail ?? {};
  }
}

/** Retrying cannot help (bad input, a refused policy): the job ends at once. */
export class NonRetryableError extends AppError {}

/**
 * The one way to say "retry later": a peer asked us to wait (HTTP 429 / 503 with
 * `Retry-After`, Telegram's `retry_after`) or we are waiting for a slot. The stage worker
 * obeys it: the job's next attempt comes no earlier than `retryAfterMs` from now (bounded by
 * the worker's maximum wait).
 */
export class RetryAfterError extends AppError {
  /** How long to wait before the next try, in milliseconds. */
  readonly retryAfterMs: number;
  /**
   * Whether the wait spends one of the job's attempts. A failure does (every model on the
   * route refused for now: a provider that never recovers must still end the run after the
   * last attempt); a wait that is not a failure does not (a channel's 429 or our own pacing,
   * which delay a send but say nothing about whether it will succeed).
   */
  readonly spendsAttempt: boolean;
  constructor(
    code: ErrorCode,
    message: string,
    retryAfterMs: number,
    options: {
      cause?: unknown;
      detail?: Record<string, unknown>;
      /** @defaultValue false */
      spendsAttempt?: boolean;
    } = {},
  ) {
    const { spendsAttempt = false, ...rest } = options;
    super(code, message, { ...rest, status: 503 });
    this.retryAfterMs = retryAfterMs;
    this.spendsAttempt = spendsAttempt;
  }
}

/**
 * Refused for now, with nothing written: the client, or the channel's redelivery, should send
 * the request again after `retryAfterS` (answered with `Retry-After`). A limit or a backlog
 * bound at ingress, not a fault of the request.
 */
export class TryLaterError extends AppError {
  /** Seconds until a retry may be taken, as `Retry-After` says them. */
  readonly retryAfterS: number;
  constructor(
    code: ErrorCode,
    message: string,
    retryAfterS: number,
    options: { status: 429 | 503; detail?: Record<string, unknown> },
  ) {
    super(code, message, options);
    this.retryAfterS = retryAfterS;
  }
}

/**
 * A contract body, a CLI argument or an HTTP body failed validation. `issues` holds one
 * `path: message` line per problem, the path naming the bad field.
 */
export class ContractViolationError extends NonRetryableError {
  readonly issues: readonly string[];
  constructor(issues: readonly string[], message?: string, options: { code?: ErrorCode } = {}) {
    super(options.code ?? 'CONTRACT_INVALID', message ?? issues.join('; '), {
      status: 400,
      detail: { issues },
    });
    this.issues = issues;
  }
}

/** A policy gate said no (budget, rate, mode, grant). */
export class PolicyDeniedError extends NonRetryableError {
  constructor(
    code: ErrorCode,
    message: string,
    options: { detail?: Record<string, unknown> } = {},
  ) {
    super(code, message, { status: 403, ...options });
  }
}

/** Something tried to cross a tenant boundary. Always a bug or an attack; never retried. */
export class TenantIsolationError extends NonRetryableError {
  constructor(message: string, options: { detail?: Record<string, unknown> } = {}) {
    super('TENANT_ISOLATION', message, { status: 403, ...options });
  }
}

/** A thing that was asked for by id does not exist (or is not visible to this tenant). */
export class NotFoundError extends NonRetryableError {
  constructor(code: ErrorCode, message: string) {
    super(code, message, { status: 404 });
  }
}

/** A stored value no longer matches its recorded hash: refuse to use it. */
export class IntegrityError extends NonRetryableError {
  constructor(
    code: ErrorCode,
    message: string,
    options: { detail?: Record<string, unknown> } = {},
  ) {
    super(code, message, { status: 500, ...options });
  }
}
