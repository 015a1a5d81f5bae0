import type { Bulkheads } from '../bulkheads/createBulkheads.ts';
import type { GatewayServer } from '../contracts/mcpGatewayContract.ts';

/**
 * The bulkhead share of one project's MCP server: its key and how many calls (and
 * discoveries) may wait on it at once — the contract's `maxConcurrency`, else the platform's
 * share per dependency.
 */
export function serverShare(
  bulkheads: Bulkheads,
  projectId: string,
  server: Pick<GatewayServer, 'name' | 'maxConcurrency'>,
): { key: string; limit: number } {
  return {
    key: `mcp:${projectId}:${server.name}`,
    limit: server.maxConcurrency ?? bulkheads.limits.dependencySlots,
  };
}
