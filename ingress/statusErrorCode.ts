import type { ErrorCode } from '../pipeline/errorCodes.ts';

/**
 * The code named after each error status Node knows a reason phrase for, in the 4xx range
 * (what a library's exposed client error can carry) and 501 (the router's answer to a method
 * it does not know): the phrase upper-cased, `405` → `METHOD_NOT_ALLOWED`. Spelt out rather
 * than derived at run time so that each one is a registered {@link ErrorCode}.
 */
const STATUS_ERROR_CODES: Readonly<Record<number, ErrorCode>> = {
  400: 'BAD_REQUEST',
  401: 'UNAUTHORIZED',
  402: 'PAYMENT_REQUIRED',
  403: 'FORBIDDEN',
  404: 'NOT_FOUND',
  405: 'METHOD_NOT_ALLOWED',
  406: 'NOT_ACCEPTABLE',
  407: 'PROXY_AUTHENTICATION_REQUIRED',
  408: 'REQUEST_TIMEOUT',
  409: 'CONFLICT',
  410: 'GONE',
  411: 'LENGTH_REQUIRED',
  412: 'PRECONDITION_FAILED',
  413: 'PAYLOAD_TOO_LARGE',
  414: 'URI_TOO_LONG',
  415: 'UNSUPPORTED_MEDIA_TYPE',
  416: 'RANGE_NOT_SATISFIABLE',
  417: 'EXPECTATION_FAILED',
  418: 'I_M_A_TEAPOT',
  421: 'MISDIRECTED_REQUEST',
  422: 'UNPROCESSABLE_ENTITY',
  423: 'LOCKED',
  424: 'FAILED_DEPENDENCY',
  425: 'TOO_EARLY',
  426: 'UPGRADE_REQUIRED',
  428: 'PRECONDITION_REQUIRED',
  429: 'TOO_MANY_REQUESTS',
  431: 'REQUEST_HEADER_FIELDS_TOO_LARGE',
  451: 'UNAVAILABLE_FOR_LEGAL_REASONS',
  501: 'NOT_IMPLEMENTED',
};

/**
 * The code the HTTP edge answers with for an error status no route gave a code of its own:
 * the status's name (see above), else `HTTP_ERROR` (a 5xx without a body, a status Node has
 * no phrase for).
 */
export function statusErrorCode(status: number): ErrorCode {
  return STATUS_ERROR_CODES[status] ?? 'HTTP_ERROR';
}
