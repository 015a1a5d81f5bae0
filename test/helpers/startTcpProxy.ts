import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';
import { trackOpen } from './trackOpen.ts';

/** A TCP proxy in front of a real server, to cut it off and bring it back from a test. */
export type TcpProxy = {
  /** The proxy's port on 127.0.0.1. */
  port: number;
  /**
   * Drops every open connection and refuses new ones (the port stops listening), as a
   * server that went down does.
   */
  cut(): Promise<void>;
  /** Listens again on the same port and forwards as before. */
  restore(): Promise<void>;
  /** Connections accepted since the start (forwarded or not). */
  connections(): number;
  close(): Promise<void>;
};

/**
 * Forwards 127.0.0.1:(free port) to `target`, byte for byte, so a client of the proxy sees the
 * real server until `cut()`, then what a stopped server gives: reset connections and
 * `ECONNREFUSED`. The shared server itself is never touched.
 */
export async function startTcpProxy(target: { host: string; port: number }): Promise<TcpProxy> {
  const open = new Set<Socket>();
  let accepted = 0;
  const onConnection = (client: Socket) => {
    accepted += 1;
    const upstream = connect(target.port, target.host);
    open.add(client);
    open.add(upstream);
    const drop = () => {
      client.destroy();
      upstream.destroy();
      open.delete(client);
      open.delete(upstream);
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    client.pipe(upstream);
    upstream.pipe(client);
  };
  const listen = (server: Server, port: number) =>
    new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
  let server = createServer(onConnection);
  await listen(server, 0);
  const port = (server.address() as AddressInfo).port;
  let listening = true;
  trackOpen({
    what: `startTcpProxy 127.0.0.1:${port} → ${target.host}:${target.port}`,
    isOpen: () => listening,
    forceClose: () => stop(),
  });
  const stop = async () => {
    if (!listening) return;
    listening = false;
    const closed = new Promise<void>((r) => server.close(() => r()));
    for (const socket of open) socket.resetAndDestroy();
    open.clear();
    await closed;
  };
  return {
    port,
    cut: stop,
    async restore() {
      if (listening) return;
      server = createServer(onConnection);
      await listen(server, port);
      listening = true;
    },
    connections: () => accepted,
    close: stop,
  };
}
