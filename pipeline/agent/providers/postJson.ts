import type { z } from 'zod';
import type { ErrorCode } from '../../errorCodes.ts';
import { retryAfterMs } from '../../retryAfterMs.ts';
import { ProviderError } from '../ProviderError.ts';

/** Longest excerpt of a provider's error body that may reach a log line. */
const EXCERPT_CHARS = 200;

/** Statuses worth another try later, besides every 5xx. */
const RETRYABLE_STATUS = new Set([408, 409, 429]);

/**
 * POSTs a JSON body to a model provider and parses the 2xx answer with `schema`. Every failure
 * becomes a {@link ProviderError} classified for retry, except the caller's own abort, which is
 * rethrown untouched so the caller can stop at once. The call is bounded by `timeoutMs` as well
 * as by the caller's signal. `secret` is scrubbed from every message built here.
 */
export async function postJson<T>({
  provider,
  model,
  url,
  headers,
  body,
  schema,
  timeoutMs,
  signal,
  secret,
  fetch: fetchImpl = globalThis.fetch,
}: {
  provider: string;
  model: string;
  url: string;
  headers: Record<string, string>;
  body: unknown;
  schema: z.ZodType<T>;
  timeoutMs: number;
  signal?: AbortSignal | undefined;
  /** The API key in use, if any: never allowed into an error message. */
  secret?: string | undefined;
  fetch?: typeof fetch | undefined;
}): Promise<T> {
  const label = `${provider} model ${model}`;
  const fail = (
    code: ErrorCode,
    message: string,
    extra: { retryable: boolean; httpStatus?: number; retryAfterMs?: number; cause?: unknown },
  ) =>
    new ProviderError(code, redact(`${label}: ${message}`, secret), { provider, model, ...extra });

  const timeout = AbortSignal.timeout(timeoutMs);
  const combined = signal ? AbortSignal.any([signal, timeout]) : timeout;

  let status: number;
  let responseHeaders: Headers;
  let text: string;
  try {
    const response = await fetchImpl(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json', ...headers },
      body: JSON.stringify(body),
      signal: combined,
    });
    status = response.status;
    responseHeaders = response.headers;
    // The body is read under the same signal, so a server that stalls mid-answer times out too.
    text = await response.text();
  } catch (error) {
    if (signal?.aborted) throw error;
    if (timeout.aborted) {
      throw fail('MODEL_TIMEOUT', `no answer within ${timeoutMs} ms`, { retryable: true });
    }
    throw fail('MODEL_NETWORK', `could not reach the provider (${networkReason(error)})`, {
      retryable: true,
      cause: error,
    });
  }

  if (status < 200 || status > 299) {
    const retryable = status >= 500 || RETRYABLE_STATUS.has(status);
    const waitMs = retryable ? retryAfterMs(responseHeaders.get('retry-after')) : undefined;
    throw fail(codeForStatus(status), `HTTP ${status}: ${excerpt(text, secret)}`, {
      retryable,
      httpStatus: status,
      ...(waitMs === undefined ? {} : { retryAfterMs: waitMs }),
    });
  }

  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw fail('MODEL_BAD_RESPONSE', `HTTP ${status} with a body that is not JSON`, {
      retryable: true,
      httpStatus: status,
    });
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    // Issue paths and messages only: the values may hold the model's answer.
    const issues = parsed.error.issues
      .slice(0, 3)
      .map((issue) => `${issue.path.join('.') || '(root)'}: ${issue.message}`)
      .join('; ');
    throw fail('MODEL_BAD_RESPONSE', `HTTP ${status} with an unexpected body (${issues})`, {
      retryable: true,
      httpStatus: status,
    });
  }
  return parsed.data;
}

function codeForStatus(status: number): ErrorCode {
  if (status === 401 || status === 403) return 'MODEL_AUTH_FAILED';
  if (status === 408) return 'MODEL_TIMEOUT';
  if (status === 429) return 'MODEL_RATE_LIMITED';
  if (status >= 500 || status === 409) return 'MODEL_SERVER_ERROR';
  return 'MODEL_BAD_REQUEST';
}

/** A one-line, capped, key-free excerpt of an error body. */
function excerpt(text: string, secret: string | undefined): string {
  // Redact before cutting, so a cut can never leave half a key behind.
  const line = redact(text, secret).replace(/\s+/g, ' ').trim();
  if (line === '') return '(empty body)';
  return line.length > EXCERPT_CHARS ? `${line.slice(0, EXCERPT_CHARS)}…` : line;
}

function redact(text: string, secret: string | undefined): string {
  return secret ? text.split(secret).join('[redacted]') : text;
}

/** The low-level reason fetch hides in `cause` (ECONNREFUSED, ENOTFOUND, …). */
function networkReason(error: unknown): string {
  const cause = error instanceof Error ? error.cause : undefined;
  if (cause && typeof cause === 'object' && 'code' in cause && typeof cause.code === 'string') {
    return cause.code;
  }
  return error instanceof Error ? error.name : 'unknown error';
}
