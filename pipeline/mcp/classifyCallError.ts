import { StreamableHTTPError } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ErrorCode, McpError } from '@modelcontextprotocol/sdk/types.js';
import { ToolCallError } from './ToolCallError.ts';

/** What a failed `tools/call` means for the connection and for a repeat. */
export type ClassifiedCallError = {
  /**
   * What the caller is told when the call is not made again; its `maybeSent` says whether
   * the request may have reached the server.
   */
  error: ToolCallError;
  /**
   * The connection is broken (drop it; a repeat goes over a new one). False when the server
   * answered with an error or the call timed out: the connection is fine.
   */
  connectionLost: boolean;
};

/**
 * Classifies an error thrown by one `tools/call` request: a timeout (`TOOL_TIMEOUT`, maybe
 * sent), an error the server answered with (`TOOL_PROTOCOL_ERROR`, not sent only for the
 * JSON-RPC errors a server gives before it runs a tool), or a lost connection
 * (`TOOL_SERVER_UNAVAILABLE`, not sent only when the failure proves the request never reached
 * a server able to act on it).
 *
 * @param call - the tool's name and timeout, and the server's name, for the messages
 */
export function classifyCallError(
  error: unknown,
  call: { server: string; tool: string; timeoutMs: number },
): ClassifiedCallError {
  if (error instanceof McpError && error.code === (ErrorCode.RequestTimeout as number)) {
    return {
      error: new ToolCallError(
        'TOOL_TIMEOUT',
        `"${call.tool}" did not answer in ${call.timeoutMs} ms`,
        true,
        error,
      ),
      connectionLost: false,
    };
  }
  // An error the server answered with: the connection is fine. Only the errors a server
  // gives before it runs the tool (a parse error, a bad request, an unknown method) prove
  // the call was not made; any other, invalid params included, may come from the middle of it.
  if (error instanceof McpError && error.code !== (ErrorCode.ConnectionClosed as number)) {
    return {
      error: new ToolCallError(
        'TOOL_PROTOCOL_ERROR',
        `"${call.tool}" failed on the server: ${error.message}`,
        !REFUSED_BEFORE_RUNNING.has(error.code),
        error,
      ),
      connectionLost: false,
    };
  }
  return {
    error: new ToolCallError(
      'TOOL_SERVER_UNAVAILABLE',
      `MCP server "${call.server}" failed during "${call.tool}"`,
      !isNotSent(error),
      error,
    ),
    connectionLost: true,
  };
}

/**
 * JSON-RPC errors a server answers before it runs a tool. Invalid params is not among them:
 * some servers send it after the tool ran, when its output does not fit its own schema.
 */
const REFUSED_BEFORE_RUNNING = new Set<number>([
  ErrorCode.ParseError,
  ErrorCode.InvalidRequest,
  ErrorCode.MethodNotFound,
]);

/**
 * Failures that prove the request never reached a server able to act on it: a streamable-HTTP
 * session the server no longer knows (it restarted), or a transport already closed.
 */
function isNotSent(error: unknown): boolean {
  if (error instanceof StreamableHTTPError) return error.code === 404;
  return error instanceof Error && error.message === 'Not connected';
}
