import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort } from '../../ops/freePort.ts';
import { projectNode } from '../../ops/projectNode.ts';
import { useTestDatabase } from '../helpers/testDatabase.ts';
import { TEST_REDIS_URL, useRedisPrefix } from '../helpers/useRedisPrefix.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

const db = useTestDatabase();
const prefix = useRedisPrefix();
let dev: ChildProcess | undefined;

afterAll(async () => {
  if (dev?.exitCode === null && dev.signalCode === null) {
    const exited = once(dev, 'exit');
    dev.kill('SIGTERM');
    await exited;
  }
}, 60_000);

// web listens on HOST: the supervisor must ask it there, and say so
const HOST = '127.0.0.2';

type Said = { msg: string; readyz?: number | string };

describe('awooop dev', () => {
  // Regression: "AwoooP is running" was printed as soon as the children were spawned, 35–80 s
  // before the web process listened on a loaded machine.
  it('says starting first, and running only once /readyz answers 200', async () => {
    const port = await freePort(HOST);
    const readyz = `http://${HOST}:${port}/readyz`;
    dev = spawn(projectNode(), ['ops/awooop.ts', 'dev'], {
      cwd: ROOT,
      env: {
        PATH: process.env.PATH ?? '',
        HOME: process.env.HOME ?? '/tmp',
        DATABASE_URL: db().url,
        REDIS_URL: TEST_REDIS_URL,
        AWOOOP_REDIS_PREFIX: prefix,
        PORT: String(port),
        HOST,
        LOG_LEVEL: 'info',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const said: Said[] = [];
    const running = new Promise<void>((resolve, reject) => {
      let buffer = '';
      dev?.stdout?.on('data', (data: Buffer) => {
        buffer += data.toString();
        const lines = buffer.split('\n');
        buffer = lines.pop() ?? '';
        for (const line of lines) {
          let msg: unknown;
          try {
            msg = (JSON.parse(line) as { name?: unknown; msg?: unknown }).msg;
          } catch {
            continue;
          }
          if (typeof msg !== 'string' || !msg.startsWith('AwoooP is')) continue;
          const entry: Said = { msg };
          said.push(entry);
          if (!msg.startsWith('AwoooP is running')) continue;
          // Asked the moment the line appears: the line must not come before readiness.
          fetch(readyz)
            .then((res) => (entry.readyz = res.status))
            .catch((error: Error) => (entry.readyz = `refused: ${error.message}`))
            .then(() => resolve(), reject);
        }
      });
      dev?.once('exit', (code) => reject(new Error(`dev exited with ${code}`)));
    });
    await running;
    expect(said[0]?.msg).toMatch(/^AwoooP is starting/);
    const line = said.find((s) => s.msg.startsWith('AwoooP is running'));
    expect(line).toEqual({
      msg: `AwoooP is running: http://${HOST}:${port} (web, resolve, policy, execute, sanitize, deliver, sweeper, channels)`,
      readyz: 200,
    });
  }, 240_000);
});
