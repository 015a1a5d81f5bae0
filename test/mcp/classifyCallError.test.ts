import { StreamableHTTPError } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ErrorCode, McpError } from '@modelcontextprotocol/sdk/types.js';
import { describe, expect, it } from 'vitest';
import { classifyCallError } from '../../pipeline/mcp/classifyCallError.ts';

const call = { server: 'ops', tool: 'restart', timeoutMs: 1500 };
const classify = (error: unknown) => {
  const { error: e, connectionLost } = classifyCallError(error, call);
  return { code: e.code, maybeSent: e.maybeSent, connectionLost, message: e.message };
};

describe('classifyCallError', () => {
  it('reads a request timeout as TOOL_TIMEOUT, maybe sent, on a connection that is fine', () => {
    expect(classify(new McpError(ErrorCode.RequestTimeout, 'timed out'))).toEqual({
      code: 'TOOL_TIMEOUT',
      maybeSent: true,
      connectionLost: false,
      message: '"restart" did not answer in 1500 ms',
    });
  });

  it.each([ErrorCode.ParseError, ErrorCode.InvalidRequest, ErrorCode.MethodNotFound])(
    'reads JSON-RPC error %i as refused before the tool ran: not sent',
    (code) => {
      expect(classify(new McpError(code, 'no'))).toMatchObject({
        code: 'TOOL_PROTOCOL_ERROR',
        maybeSent: false,
        connectionLost: false,
      });
    },
  );

  it.each([ErrorCode.InvalidParams, ErrorCode.InternalError, -32042])(
    'reads JSON-RPC error %i as maybe sent: it may come from the middle of the call',
    (code) => {
      const classified = classify(new McpError(code, 'broke'));
      expect(classified).toMatchObject({
        code: 'TOOL_PROTOCOL_ERROR',
        maybeSent: true,
        connectionLost: false,
      });
      expect(classified.message).toContain('"restart" failed on the server: ');
      expect(classified.message).toContain('broke');
    },
  );

  it('reads a stale streamable-HTTP session (404) as a lost connection, not sent', () => {
    expect(classify(new StreamableHTTPError(404, 'Session not found'))).toEqual({
      code: 'TOOL_SERVER_UNAVAILABLE',
      maybeSent: false,
      connectionLost: true,
      message: 'MCP server "ops" failed during "restart"',
    });
  });

  it('reads a transport already closed ("Not connected") as a lost connection, not sent', () => {
    expect(classify(new Error('Not connected'))).toMatchObject({
      code: 'TOOL_SERVER_UNAVAILABLE',
      maybeSent: false,
      connectionLost: true,
    });
  });

  it.each([
    ['a closed connection', new McpError(ErrorCode.ConnectionClosed, 'Connection closed')],
    ['a streamable-HTTP 500', new StreamableHTTPError(500, 'boom')],
    ['fetch failed', new TypeError('fetch failed')],
    ['a thrown non-error', 'gone'],
  ])('reads %s as a lost connection that may have been sent', (_what, error) => {
    expect(classify(error)).toMatchObject({
      code: 'TOOL_SERVER_UNAVAILABLE',
      maybeSent: true,
      connectionLost: true,
    });
  });

  it('keeps the original error as the cause', () => {
    const original = new StreamableHTTPError(404, 'Session not found');
    expect(classifyCallError(original, call).error.cause).toBe(original);
  });
});
