import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../ops/freePort.ts';
import { projectNode } from '../../ops/projectNode.ts';
import { useTestDatabase } from '../helpers/testDatabase.ts';
import { TEST_REDIS_URL, useRedisPrefix } from '../helpers/useRedisPrefix.ts';
import { waitFor } from '../helpers/waitFor.ts';

// Pins issue 12 item 6: `web` listened on 0.0.0.0 whatever the configuration said, and its
// /metrics was open. This runs the real `awooop web` process on a loopback address other than
// 127.0.0.1, so where it listens is seen from outside.

const CLI = fileURLToPath(new URL('../../ops/awooop.ts', import.meta.url));
const HOST = '127.0.0.2';
const METRICS_TOKEN = 'metrics-token-for-the-scraper-0002';

const db = useTestDatabase();
const prefix = useRedisPrefix();
let web: ChildProcess;
let port: number;
let output = '';

async function reachable(host: string): Promise<number | string> {
  try {
    return (await fetch(`http://${host}:${port}/healthz`)).status;
  } catch (error) {
    return String((error as { cause?: { code?: string } }).cause?.code ?? error);
  }
}

beforeAll(async () => {
  port = await freePort(HOST);
  web = spawn(projectNode(), [CLI, 'web'], {
    env: {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '/tmp',
      DATABASE_URL: db().url,
      REDIS_URL: TEST_REDIS_URL,
      AWOOOP_REDIS_PREFIX: prefix,
      PORT: String(port),
      HOST,
      AWOOOP_METRICS_TOKEN: METRICS_TOKEN,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  web.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  web.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  await waitFor(async () => ((await reachable(HOST)) === 200 ? true : undefined), {
    what: `awooop web on ${HOST}:${port}`,
    timeoutMs: 60_000,
  }).catch((error: Error) => {
    throw new Error(`${error.message}; its output: ${output.slice(-2000)}`);
  });
});

afterAll(async () => {
  if (web && web.exitCode === null) {
    const exited = new Promise((r) => web.once('exit', r));
    web.kill('SIGTERM');
    await exited;
  }
});

describe('awooop web', () => {
  it('listens on HOST only', async () => {
    expect(await reachable(HOST)).toBe(200);
    expect(await reachable('127.0.0.1')).toBe('ECONNREFUSED');
  });

  it('serves /metrics to its metrics token and answers 401 to anyone else', async () => {
    const url = `http://${HOST}:${port}/metrics`;
    const open = await fetch(url);
    expect(open.status).toBe(401);
    expect(await open.json()).toMatchObject({ error: { code: 'UNAUTHORIZED' } });
    const scraped = await fetch(url, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } });
    expect(scraped.status).toBe(200);
    const text = await scraped.text();
    expect(text).toContain('# TYPE awooop_runs gauge');
    // the web process's own default metrics, beside the platform's
    expect(text).toContain('# TYPE process_cpu_user_seconds_total counter');
    expect(text).toContain('# TYPE nodejs_eventloop_lag_seconds gauge');
    expect(text).toMatch(/^process_resident_memory_bytes \d+$/m);
  });
});
