import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';
import {
  StreamableHTTPClientTransport,
  StreamableHTTPError,
} from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import type { GatewayServer } from '../contracts/mcpGatewayContract.ts';

/**
 * Connects `client` to an HTTP MCP server over streamable HTTP, sending `headers` (the
 * server's resolved credentials) on every request. The spec's backwards-compatible path: when
 * `sseFallback` is on and the server refuses the streamable POST with a 4xx other than 401 or
 * 403, the same client connects again over the older HTTP+SSE transport, with the headers on
 * its event stream too.
 *
 * @param timeoutMs - the bound on each `initialize` (the caller bounds the whole connect)
 * @param onFallback - called just before the SSE attempt: the failed initialize closed the
 *   client (its `onclose` fired), and the same client is about to connect again
 */
export async function connectStreamableHttp(
  client: Client,
  transport: Extract<GatewayServer['transport'], { type: 'streamable_http' }>,
  {
    headers,
    onFallback,
    timeoutMs,
  }: { headers: Record<string, string>; onFallback: () => void; timeoutMs: number },
): Promise<void> {
  const url = new URL(transport.url);
  try {
    await client.connect(new StreamableHTTPClientTransport(url, { requestInit: { headers } }), {
      timeout: timeoutMs,
    });
  } catch (error) {
    const refused =
      error instanceof StreamableHTTPError && (error.code ?? 0) >= 400 && (error.code ?? 0) < 500;
    if (!transport.sseFallback || !refused || error.code === 401 || error.code === 403) throw error;
    onFallback();
    const sse: Transport = new SSEClientTransport(url, {
      requestInit: { headers },
      eventSourceInit: {
        fetch: (u, init) =>
          fetch(u, {
            ...init,
            headers: { ...headers, ...(init?.headers as Record<string, string>) },
          }),
      },
    });
    await client.connect(sse, { timeout: timeoutMs });
  }
}
