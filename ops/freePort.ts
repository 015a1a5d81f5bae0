import { createServer } from 'node:net';

/**
 * A TCP port free on `host` right now, for a child process or a test to listen on: the kernel
 * picks one for a throwaway listener, which is closed before the port is returned. Another
 * process could take it in between; on a loopback address that is rare enough for the dev
 * programs and tests that use it.
 *
 * @param host - the address to probe. @defaultValue `'127.0.0.1'`
 */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, resolve);
  });
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('no port was assigned');
  return address.port;
}
