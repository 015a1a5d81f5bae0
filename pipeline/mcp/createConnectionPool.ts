import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { GatewayServer } from '../contracts/mcpGatewayContract.ts';
import { ToolCallError } from './ToolCallError.ts';

/** One open connection to an MCP server, as the pool keeps it. */
export type PooledConnection = {
  /** The pool key it is kept under (see {@link createConnectionPool}). */
  key: string;
  client: Client;
  /** The server exited or dropped the session: the next use of this key connects again. */
  closed: boolean;
  /** Calls in flight on this connection. */
  busy: number;
  /** Superseded (a newer credential or config): closed once no call is in flight. */
  retired: boolean;
};

/** Pooled connections to MCP servers, shared by every call of a process. */
export type ConnectionPool = {
  /**
   * The live connection for a project's server, opened if there is none and opened again
   * (once) if the pooled one has closed; counted as in use until {@link ConnectionPool.release}.
   * Throws {@link ToolCallError} `TOOL_SERVER_UNAVAILABLE`, not sent, when it cannot connect,
   * or when no connection is there within `timeoutMs` (an open another caller started too).
   */
  acquire(projectId: string, server: GatewayServer, timeoutMs: number): Promise<PooledConnection>;
  /** Ends one use of a connection; a superseded one closes after its last use. */
  release(connection: PooledConnection): void;
  /** Takes a broken connection out of the pool and closes it. */
  drop(connection: PooledConnection): Promise<void>;
  /** Closes every connection (shutdown). */
  close(): Promise<void>;
};

/**
 * A pool of connections keyed by project, server name and `configKey` (what tells the server's
 * configurations apart: the gateway hashes the transport with its resolved credentials). A key the pool lacks is opened with `open` once, however many calls ask at the
 * same time; when it replaces another key of the same project and server (a rotated secret, a
 * changed config), the older connection is retired and closed once its calls in flight are
 * done. A connection that failed to open is forgotten, so the next call tries again.
 */
export function createConnectionPool({
  configKey,
  open,
}: {
  configKey: (projectId: string, server: GatewayServer) => Promise<string>;
  /** Opens a connection within `timeoutMs` (the first caller's), or rejects. */
  open: (
    projectId: string,
    server: GatewayServer,
    key: string,
    timeoutMs: number,
  ) => Promise<PooledConnection>;
}): ConnectionPool {
  const pool = new Map<string, Promise<PooledConnection>>();

  async function get(
    projectId: string,
    server: GatewayServer,
    timeoutMs: number,
    reopened = false,
  ): Promise<PooledConnection> {
    const key = `${projectId}\u0000${server.name}\u0000${await configKey(projectId, server)}`;
    let entry = pool.get(key);
    if (!entry) {
      // A newer credential or config for the same server: the older connection goes once
      // the calls in flight on it are done (a run on a pinned revision and the endpoint on
      // the active one may alternate; neither has its calls cut).
      for (const [other, conn] of pool) {
        if (other.startsWith(`${projectId}\u0000${server.name}\u0000`)) {
          pool.delete(other);
          void conn
            .then(async (c) => {
              c.retired = true;
              if (c.busy === 0) await c.client.close();
            })
            .catch(() => {});
        }
      }
      entry = open(projectId, server, key, timeoutMs);
      pool.set(key, entry);
      entry.catch(() => pool.delete(key));
    }
    let connection: PooledConnection;
    let timer: NodeJS.Timeout | undefined;
    try {
      // A caller that joins an open another began waits no longer than its own bound.
      connection = await Promise.race([
        entry,
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`no connection within ${timeoutMs} ms`)),
            timeoutMs,
          );
        }),
      ]);
    } catch (error) {
      throw new ToolCallError(
        'TOOL_SERVER_UNAVAILABLE',
        `cannot connect to MCP server "${server.name}"`,
        false,
        error,
      );
    } finally {
      clearTimeout(timer);
    }
    if (!connection.closed) return connection;
    if (pool.get(key) === entry) pool.delete(key);
    if (reopened) {
      throw new ToolCallError(
        'TOOL_SERVER_UNAVAILABLE',
        `MCP server "${server.name}" closed the connection`,
        false,
      );
    }
    return get(projectId, server, timeoutMs, true);
  }

  return {
    async acquire(projectId, server, timeoutMs) {
      const connection = await get(projectId, server, timeoutMs);
      connection.busy += 1;
      return connection;
    },

    release(connection) {
      connection.busy -= 1;
      if (connection.retired && connection.busy === 0)
        void connection.client.close().catch(() => {});
    },

    async drop(connection) {
      const current = pool.get(connection.key);
      if (current && (await current.catch(() => null)) === connection) pool.delete(connection.key);
      connection.closed = true;
      await connection.client.close().catch(() => {});
    },

    async close() {
      const all = [...pool.values()];
      pool.clear();
      await Promise.all(all.map((c) => c.then((conn) => conn.client.close()).catch(() => {})));
    },
  };
}
