import type { GatewayServer } from '../contracts/mcpGatewayContract.ts';

/**
 * How long connecting to a server and listing its tools may take: its slowest tool's
 * `timeoutMs`, under the runtime contract's `timeouts.toolMs` when one is given — the
 * contract's own bound, not the MCP SDK's 60 s default.
 */
export function serverTimeoutMs(
  server: Pick<GatewayServer, 'tools'>,
  runtime?: { timeouts: { toolMs: number } },
): number {
  const slowest = Math.max(...server.tools.map((t) => t.timeoutMs));
  return Math.min(slowest, runtime?.timeouts.toolMs ?? slowest);
}
