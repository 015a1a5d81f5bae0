import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import type { ErrorCode } from '../pipeline/errorCodes.ts';

/** What Node's HTTP parser refuses with a status other than 400, as Node itself answers them. */
const REFUSALS: Record<string, { status: number; code: ErrorCode; message: string }> = {
  HPE_HEADER_OVERFLOW: {
    status: 431,
    code: 'HEADERS_TOO_LARGE',
    message: 'the request line and headers are larger than this server reads',
  },
  HPE_CHUNK_EXTENSIONS_OVERFLOW: {
    status: 413,
    code: 'CHUNK_EXTENSIONS_TOO_LARGE',
    message: 'the chunk extensions of the body are larger than this server reads',
  },
  ERR_HTTP_REQUEST_TIMEOUT: {
    status: 408,
    code: 'REQUEST_TIMEOUT',
    message: 'the request was not received in time',
  },
};

/** Errors of a client that went away: nobody to answer. */
const CLIENT_GONE = new Set(['ECONNRESET', 'EPIPE', 'ECONNABORTED']);

/**
 * The HTTP server's `clientError` listener: a request Node's parser refuses (a malformed
 * request line or header, headers over the limit, a timeout) is answered as every other
 * refusal is, `{ error: { code, message } }` with Node's own status (400, 408, 413, 431) and
 * `Connection: close`, where the connection still allows it (writable, and no answer to this
 * connection's request already begun), and the connection is closed. Only the error's code is
 * logged: the error also holds the raw bytes read (`rawPacket`), credentials among them.
 */
export function answerClientError({ logger }: { logger: Logger }) {
  return function onClientError(error: Error & { code?: string }, socket: Duplex): void {
    // Node's codes are fixed names (HPE_INVALID_METHOD, ...); anything else is not repeated.
    const code =
      typeof error.code === 'string' && /^[A-Z0-9_]{1,64}$/.test(error.code)
        ? error.code
        : 'UNKNOWN';
    if (!CLIENT_GONE.has(code)) {
      logger.warn({ code }, 'refused a request the HTTP parser could not read');
    }
    // As Node's own handler: a response to this connection whose head went out already must
    // not get a second one in the middle of it. Harmless twice (the parser may refuse more
    // bytes of a connection being closed): the second call finds the socket ended and only
    // destroys it.
    const inFlight = (socket as Duplex & { _httpMessage?: { headersSent?: boolean } })._httpMessage;
    if (!socket.writable || CLIENT_GONE.has(code) || inFlight?.headersSent === true) {
      socket.destroy();
      return;
    }
    const refusal = REFUSALS[code] ?? {
      status: 400,
      code: 'MALFORMED_REQUEST',
      message: `the request is not valid HTTP/1.1 (${code})`,
    };
    const body = JSON.stringify({ error: { code: refusal.code, message: refusal.message } });
    // Closed once the answer is written: the parser reads nothing more from this connection.
    socket.end(
      `HTTP/1.1 ${refusal.status} ${STATUS_CODES[refusal.status]}\r\n` +
        'Content-Type: application/json; charset=utf-8\r\n' +
        `Content-Length: ${Buffer.byteLength(body)}\r\n` +
        'Connection: close\r\n\r\n' +
        body,
      () => socket.destroy(),
    );
  };
}
