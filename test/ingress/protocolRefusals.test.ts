import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { applyTestTenant, pipelineTenant, TEST_SECRETS } from '../helpers/pipelineTenant.ts';
import { startPipeline, type Pipeline } from '../helpers/startPipeline.ts';
import { tableCounts } from '../helpers/tableCounts.ts';
import { useTestDatabase } from '../helpers/testDatabase.ts';
import { useRedisPrefix } from '../helpers/useRedisPrefix.ts';

const db = useTestDatabase();
const prefix = useRedisPrefix();

let pipeline: Pipeline;
let owner: pg.Client;

const PROJECT = 'acme';

beforeAll(async () => {
  pipeline = await startPipeline({ pool: db().pool, prefix, workers: false });
  owner = await db().owner();
  await applyTestTenant(
    { pool: db().pool, logger: pipeline.ctx.logger },
    pipelineTenant({
      projectId: PROJECT,
      telegramApiRoot: 'http://127.0.0.1:9/',
      lineBaseUrl: 'http://127.0.0.1:9/',
    }),
  );
  for (const [name, value] of Object.entries(TEST_SECRETS))
    await pipeline.setSecret(PROJECT, name, value);
});

afterAll(async () => {
  await pipeline?.close();
});

describe('a method no route implements', () => {
  // Regression: methods outside the router's short list (PROPFIND, PURGE, ...) were 501 Not
  // Implemented, where any other method a route does not take is 405 with Allow.
  for (const [method, path, allow] of [
    ['PROPFIND', `/webhooks/telegram/${PROJECT}/tg`, 'POST'],
    ['PROPFIND', `/webhooks/line/${PROJECT}/ln`, 'POST'],
    ['MKCOL', `/v1/projects/${PROJECT}/messages`, 'POST'],
    [
      'PURGE',
      `/v1/projects/${PROJECT}/approvals/00000000-0000-4000-8000-000000000000/approve`,
      'POST',
    ],
    ['PURGE', '/healthz', 'HEAD, GET'],
  ] as const) {
    it(`is 405 with Allow and the error shape: ${method} ${path}`, async () => {
      const counts = await tableCounts(owner);
      const res = await fetch(`${pipeline.url}${path}`, { method });
      expect(res.status).toBe(405);
      expect(res.headers.get('allow')).toBe(allow);
      expect(await res.json()).toEqual({
        error: { code: 'METHOD_NOT_ALLOWED', message: `${method} is not allowed on ${path}` },
      });
      expect(await tableCounts(owner)).toEqual(counts);
    });
  }

  it('is 404 on a path no route has, as any other method is', async () => {
    const res = await fetch(`${pipeline.url}/no/such/path`, { method: 'PROPFIND' });
    expect(res.status).toBe(404);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('NOT_FOUND');
  });
});
