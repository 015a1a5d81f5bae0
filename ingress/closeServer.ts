import type { Server } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import type { App } from './createApp.ts';

/**
 * Stops an HTTP server of `app`: no new connections, every run event stream ended (a client
 * reconnects elsewhere with `Last-Event-ID`), requests in flight given `graceMs` to finish,
 * and then every connection left closed, so shutdown never waits on an open stream or an idle
 * keep-alive socket.
 */
export async function closeServer(
  server: Server,
  app: Pick<App, 'endStreams'>,
  { graceMs = 5000 }: { graceMs?: number } = {},
): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  await app.endStreams();
  // close() dropped the connections idle when it was called; the streams' became idle since.
  server.closeIdleConnections();
  const timer = sleep(graceMs, undefined, { ref: false });
  await Promise.race([closed, timer]);
  server.closeAllConnections();
  await closed;
}
