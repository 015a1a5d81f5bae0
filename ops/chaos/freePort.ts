import { createServer } from 'node:net';

/**
 * A TCP port free on 127.0.0.1 right now: the kernel picks one for a throwaway listener,
 * which is closed before the port is returned. Another process could take it in between;
 * on this single-user loopback that is rare enough for a dev program.
 */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('no port was assigned');
  return address.port;
}
