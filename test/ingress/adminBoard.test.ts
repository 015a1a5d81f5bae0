import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import Koa from 'koa';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminBoard } from '../../ingress/adminBoard.ts';
import { errorMiddleware } from '../../ingress/errorMiddleware.ts';
import { TEST_REDIS_URL, useRedisPrefix } from '../helpers/useRedisPrefix.ts';

// bull-board has no auth of its own: these pin the wall we put in front of it.
const prefix = useRedisPrefix();
const ADMIN = 'admin-token-'.padEnd(32, 'a');
const VIEWER = 'viewer-token-'.padEnd(32, 'v');

let redis: Redis;
let queue: Queue;
const servers: Server[] = [];

async function serve(tokens: { adminToken?: string; viewerToken?: string }): Promise<string> {
  const app = new Koa();
  app.use(errorMiddleware({ logger: pino({ level: 'silent' }) }));
  app.use(
    adminBoard({
      queues: [queue],
      adminToken: tokens.adminToken,
      viewerToken: tokens.viewerToken,
    }),
  );
  const server = app.listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  servers.push(server);
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/admin/queues`;
}

let board: string;
beforeAll(async () => {
  redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null });
  queue = new Queue('resolve', { connection: redis, prefix });
  await queue.add('resolve', { n: 1 }, { jobId: 'pinned-job' });
  board = await serve({ adminToken: ADMIN, viewerToken: VIEWER });
});

afterAll(async () => {
  for (const server of servers) server.closeAllConnections();
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  await queue.close();
  redis.disconnect();
});

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
const pause = (token: string, extra: Record<string, string> = {}) =>
  fetch(`${board}/api/queues/resolve/pause`, {
    method: 'PUT',
    headers: { ...bearer(token), ...extra },
  });

describe('the queue dashboard', () => {
  it('is off (404 with the error shape) when no admin token is configured', async () => {
    const off = await serve({});
    const res = await fetch(off, { headers: bearer(ADMIN) });
    expect(res.status).toBe(404);
    expect(await res.json()).toMatchObject({ error: { code: 'BOARD_DISABLED' } });
  });

  it('asks for a token, and refuses a wrong one', async () => {
    const none = await fetch(board);
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toMatch(/^Basic/);
    expect((await fetch(board, { headers: bearer('x'.repeat(32)) })).status).toBe(401);
  });

  it('lets the viewer look, in read-only mode, and refuses its changes', async () => {
    const page = await fetch(board, { headers: bearer(VIEWER) });
    expect(page.status).toBe(200);
    const api = await fetch(`${board}/api/queues?activeQueue=resolve&status=latest&page=1`, {
      headers: bearer(VIEWER),
    });
    const body = (await api.json()) as { queues: { name: string; readOnlyMode: boolean }[] };
    expect(body.queues.map((q) => [q.name, q.readOnlyMode])).toEqual([['resolve', true]]);
    const refused = await pause(VIEWER);
    expect(refused.status).toBe(403);
    expect(await queue.isPaused()).toBe(false);
  });

  it('lets the admin change things, also by HTTP Basic, but not from another origin', async () => {
    const fromElsewhere = await pause(ADMIN, { origin: 'https://evil.example' });
    expect(fromElsewhere.status).toBe(403);
    expect(await queue.isPaused()).toBe(false);
    const basic = `Basic ${Buffer.from(`ops:${ADMIN}`).toString('base64')}`;
    const res = await fetch(`${board}/api/queues/resolve/pause`, {
      method: 'PUT',
      headers: { authorization: basic },
    });
    expect(res.status).toBe(200);
    expect(await queue.isPaused()).toBe(true);
  });
});
