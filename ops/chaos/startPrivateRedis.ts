import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { Redis } from 'ioredis';
import { freePort } from '../freePort.ts';

/** A redis-server of this chaos run's own, on a loopback port, with nothing persisted. */
export type PrivateRedis = {
  url: string;
  port: number;
  /** Stops the server (its data goes with it), waits `downMs`, and starts it again on the port. */
  restart(downMs: number): Promise<void>;
  /** `FLUSHALL`: every queue, job, scheduler, rate window and pacing slot is gone. */
  flushAll(): Promise<void>;
  /** Stops the server for good. */
  stop(): Promise<void>;
};

/**
 * Starts `redis-server` on a free 127.0.0.1 port with no RDB, no AOF and `noeviction`, so
 * restarting or flushing it loses everything in it and touches no other Redis on the machine.
 */
export async function startPrivateRedis(): Promise<PrivateRedis> {
  const port = await freePort();
  const url = `redis://127.0.0.1:${port}`;
  let server = await launch(port);
  return {
    url,
    port,
    async restart(downMs) {
      await halt(server);
      await new Promise((r) => setTimeout(r, downMs));
      server = await launch(port);
    },
    async flushAll() {
      const client = new Redis(url, { maxRetriesPerRequest: 3, lazyConnect: true });
      try {
        await client.connect();
        await client.flushall();
      } finally {
        client.disconnect();
      }
    },
    stop: () => halt(server),
  };
}

async function launch(port: number): Promise<ChildProcess> {
  const child = spawn(
    'redis-server',
    [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--save',
      '',
      '--appendonly',
      'no',
      '--maxmemory-policy',
      'noeviction',
      '--dir',
      '/tmp',
      '--loglevel',
      'warning',
    ],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  );
  const exited = once(child, 'exit').then(() => {
    throw new Error(`redis-server on port ${port} exited at start`);
  });
  const ready = waitForPing(port);
  await Promise.race([ready, exited]);
  exited.catch(() => {});
  return child;
}

async function waitForPing(port: number): Promise<void> {
  const until = Date.now() + 10_000;
  for (;;) {
    const client = new Redis(port, '127.0.0.1', {
      lazyConnect: true,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
    });
    client.on('error', () => {});
    try {
      await client.connect();
      if ((await client.ping()) === 'PONG') return;
    } catch {
      if (Date.now() > until) throw new Error(`redis-server on port ${port} did not answer`);
    } finally {
      client.disconnect();
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function halt(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  // SIGTERM with no persistence configured: redis exits without writing anything.
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}
