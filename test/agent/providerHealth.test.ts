import { Redis } from 'ioredis';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  findProviderEndpoint,
  registerProviderEndpoint,
  type ProviderEndpoint,
} from '../../db/providerEndpoints.ts';
import { withPlatform } from '../../db/withPlatform.ts';
import { callModelRoute } from '../../pipeline/agent/callModelRoute.ts';
import {
  createProviderHealth,
  type ProviderHealthOptions,
} from '../../pipeline/providerHealth/createProviderHealth.ts';
import type { ModelRequest } from '../../pipeline/agent/modelTypes.ts';
import { ModelTarget } from '../../pipeline/contracts/policyContract.ts';
import { AppError, RetryAfterError } from '../../pipeline/errors.ts';
import { startModelServer, type ModelServer } from '../fakes/modelServer.ts';
import { useTestDatabase } from '../helpers/testDatabase.ts';
import { TEST_REDIS_URL, useRedisPrefix } from '../helpers/useRedisPrefix.ts';

const db = useTestDatabase();
const prefix = useRedisPrefix();
let redis: Redis;
const servers: ModelServer[] = [];

beforeAll(() => {
  redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null });
});
afterAll(() => redis.disconnect());
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

/** A fresh fake provider: every test gets endpoints of its own. */
async function server(): Promise<ModelServer> {
  const s = await startModelServer();
  servers.push(s);
  return s;
}

/** One process's provider health (its own cache) over the file's database and Redis. */
function health(options: Partial<ProviderHealthOptions> = {}, actor = 'worker:execute') {
  return createProviderHealth(
    {
      pool: db().pool,
      logger: pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' }),
      redis,
      redisPrefix: prefix,
      actor,
      now: Date.now,
    },
    { failures: 2, cooldownMs: 60_000, refreshMs: 0, ...options },
  );
}

const target = (s: ModelServer) =>
  ModelTarget.parse({ provider: 'openai_compatible', model: 'm', baseUrl: s.url });

const ask = (): ModelRequest => ({
  messages: [{ role: 'user', content: 'hi' }],
  responseFormat: 'text',
  traceId: '0af7651916cd43dd8448eb211c80319c',
});

const deps = (h: ReturnType<typeof health>) => ({ resolveSecret: async () => 'k', health: h });

async function row(s: ModelServer): Promise<ProviderEndpoint> {
  const found = await findProviderEndpoint(db().pool, {
    provider: 'openai_compatible',
    baseUrl: s.url,
  });
  if (!found) throw new Error(`no endpoint row for ${s.url}`);
  return found;
}

/** The platform audit rows of an endpoint's chain, oldest first (read as the owner). */
async function auditOf(s: ModelServer) {
  const { endpointId } = await row(s);
  const owner = await db().owner();
  const { rows } = await owner.query<{
    action: string;
    actor: string;
    detail: Record<string, unknown>;
  }>(
    `SELECT action, actor, detail FROM audit_events
      WHERE project_id = 'platform' AND chain = $1 ORDER BY seq`,
    [`provider:${endpointId}`],
  );
  return rows;
}

async function rejection(promise: Promise<unknown>): Promise<AppError> {
  const error = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  if (!(error instanceof AppError)) throw new Error(`expected an AppError, got ${String(error)}`);
  return error;
}

/** Waits until the open breaker's cool-down has passed (by the database's clock). */
async function pastCooldown(s: ModelServer) {
  const { retryAt } = await row(s);
  const wait = (retryAt ?? 0) - Date.now() + 200;
  if (wait > 0) await new Promise((r) => setTimeout(r, wait));
}

describe('provider health', () => {
  it('registers an endpoint on its first call, audited once, and keeps it closed while it answers', async () => {
    const primary = await server();
    const h = health();
    for (let i = 0; i < 3; i++) await callModelRoute([target(primary)], ask(), deps(h));
    expect(await row(primary)).toMatchObject({ state: 'closed', version: 1, openedCount: 0 });
    expect(await auditOf(primary)).toEqual([
      expect.objectContaining({ action: 'provider.registered', actor: 'platform:provider-health' }),
    ]);
  });

  it('opens after consecutive retryable failures, and the route then skips the endpoint without calling it', async () => {
    const [primary, fallback] = [await server(), await server()];
    const h = health();
    primary.failNext(2, { status: 503 });
    for (let i = 0; i < 2; i++) {
      const result = await callModelRoute([target(primary), target(fallback)], ask(), deps(h));
      expect(result.text).toBe('model: hi');
    }
    expect(await row(primary)).toMatchObject({
      state: 'open',
      failures: 2,
      lastError: 'MODEL_SERVER_ERROR',
      openedCount: 1,
    });
    expect(primary.requests).toHaveLength(2);

    const result = await callModelRoute([target(primary), target(fallback)], ask(), deps(h));
    expect(result.text).toBe('model: hi');
    // The open endpoint was never asked: no request, no wait, recorded as skipped.
    expect(primary.requests).toHaveLength(2);
    expect(fallback.requests).toHaveLength(3);
    expect(result.attempts[0]).toMatchObject({ code: 'MODEL_CIRCUIT_OPEN', ms: 0 });

    const audit = await auditOf(primary);
    expect(audit.map((a) => a.action)).toEqual(['provider.registered', 'provider.breaker.opened']);
    expect(audit[1]).toMatchObject({
      actor: 'platform:provider-health',
      detail: expect.objectContaining({
        from: 'closed',
        to: 'open',
        failures: 2,
        threshold: 2,
        lastError: 'MODEL_SERVER_ERROR',
        process: 'worker:execute',
      }),
    });
  });

  it('does not count a refused request (a 4xx) as a failure, and an answer ends a run of failures', async () => {
    const primary = await server();
    const h = health();
    primary.failNext(3, { status: 400 });
    for (let i = 0; i < 3; i++) await rejection(callModelRoute([target(primary)], ask(), deps(h)));
    primary.failNext(1, { status: 500 });
    await rejection(callModelRoute([target(primary)], ask(), deps(h)));
    await callModelRoute([target(primary)], ask(), deps(h));
    primary.failNext(1, { status: 500 });
    await rejection(callModelRoute([target(primary)], ask(), deps(h)));
    expect(await row(primary)).toMatchObject({ state: 'closed', version: 1 });
  });

  it('fails the run MODEL_CIRCUIT_OPEN, retryable after the cool-down, when every target is open', async () => {
    const [a, b] = [await server(), await server()];
    const h = health();
    a.failNext(2, { status: 500 });
    b.failNext(2, { status: 500 });
    for (let i = 0; i < 2; i++)
      await rejection(callModelRoute([target(a), target(b)], ask(), deps(h)));
    const error = await rejection(callModelRoute([target(a), target(b)], ask(), deps(h)));
    expect(error.code).toBe('MODEL_CIRCUIT_OPEN');
    expect(error).toBeInstanceOf(RetryAfterError);
    expect((error as RetryAfterError).retryAfterMs).toBeGreaterThan(50_000);
    expect(error.status).toBe(503);
    expect([a.requests.length, b.requests.length]).toEqual([2, 2]);
  });

  it('writes one transition when two processes see the same failures', async () => {
    const [primary, fallback] = [await server(), await server()];
    const [one, two] = [health({}, 'worker:one'), health({}, 'worker:two')];
    // Both processes know the endpoint (closed, version 1) before the failures begin.
    await callModelRoute([target(primary)], ask(), deps(one));
    await callModelRoute([target(primary)], ask(), deps(two));
    primary.failNext(6, { status: 502 });
    await Promise.all(
      [one, two, one, two, one, two].map((h) =>
        callModelRoute([target(primary), target(fallback)], ask(), deps(h)),
      ),
    );
    expect(await row(primary)).toMatchObject({ state: 'open', version: 2, openedCount: 1 });
    const opened = (await auditOf(primary)).filter((a) => a.action === 'provider.breaker.opened');
    expect(opened).toHaveLength(1);
  });

  it('admits one probe after the cool-down; its answer closes the breaker', async () => {
    const [primary, fallback] = [await server(), await server()];
    const h = health({ cooldownMs: 1000 });
    primary.failNext(2, { status: 500 });
    for (let i = 0; i < 2; i++)
      await callModelRoute([target(primary), target(fallback)], ask(), deps(h));
    expect((await row(primary)).state).toBe('open');
    await pastCooldown(primary);

    // The probe is slow; a second call while it is out goes to the fallback.
    primary.respondNext({ delayMs: 1500 });
    const probe = callModelRoute([target(primary), target(fallback)], ask(), deps(h));
    await new Promise((r) => setTimeout(r, 500));
    const during = await callModelRoute([target(primary), target(fallback)], ask(), deps(h));
    expect(during.attempts[0]).toMatchObject({ code: 'MODEL_CIRCUIT_OPEN' });
    expect((await probe).attempts).toEqual([
      expect.not.objectContaining({ code: expect.anything() }),
    ]);
    expect(primary.requests).toHaveLength(3);

    expect(await row(primary)).toMatchObject({ state: 'closed', failures: 0 });
    expect((await auditOf(primary)).map((a) => a.action)).toEqual([
      'provider.registered',
      'provider.breaker.opened',
      'provider.breaker.half_opened',
      'provider.breaker.closed',
    ]);
    await callModelRoute([target(primary), target(fallback)], ask(), deps(h));
    expect(primary.requests).toHaveLength(4);
  });

  it('opens again when the probe fails, with a new cool-down', async () => {
    const [primary, fallback] = [await server(), await server()];
    const h = health({ cooldownMs: 1000 });
    primary.failNext(3, { status: 500 });
    for (let i = 0; i < 2; i++)
      await callModelRoute([target(primary), target(fallback)], ask(), deps(h));
    const first = await row(primary);
    await pastCooldown(primary);
    await callModelRoute([target(primary), target(fallback)], ask(), deps(h));
    const again = await row(primary);
    expect(again).toMatchObject({ state: 'open', openedCount: 2, failures: 3 });
    expect(again.retryAt!).toBeGreaterThan(first.retryAt!);
    expect(primary.requests).toHaveLength(3);
    expect((await auditOf(primary)).map((a) => a.action)).toEqual([
      'provider.registered',
      'provider.breaker.opened',
      'provider.breaker.half_opened',
      'provider.breaker.opened',
    ]);
  });

  it("calls only endpoints an operator registered when registration is the operator's", async () => {
    const [primary, fallback] = [await server(), await server()];
    const h = health({ registration: 'operator' });
    const route = [target(primary), target(fallback)];
    const error = await rejection(callModelRoute(route, ask(), deps(h)));
    expect(error.code).toBe('MODEL_REJECTED');
    expect(error.detail?.attempts).toEqual([
      expect.objectContaining({ code: 'MODEL_ENDPOINT_NOT_ALLOWED' }),
      expect.objectContaining({ code: 'MODEL_ENDPOINT_NOT_ALLOWED' }),
    ]);
    expect([primary.requests.length, fallback.requests.length]).toEqual([0, 0]);
    expect(
      await findProviderEndpoint(db().pool, {
        provider: 'openai_compatible',
        baseUrl: primary.url,
      }),
    ).toBeNull();

    await withPlatform(db().platformPool, { actor: 'ops:alice', reason: 'test' }, (tx) =>
      registerProviderEndpoint(tx, {
        provider: 'openai_compatible',
        baseUrl: fallback.url,
        actor: 'ops:alice',
        reason: 'approved vendor',
      }),
    );
    const result = await callModelRoute(route, ask(), deps(h));
    expect(result.text).toBe('model: hi');
    expect([primary.requests.length, fallback.requests.length]).toEqual([0, 1]);
  });

  it('lets the runtime neither delete an endpoint nor move one an operator holds open', async () => {
    const primary = await server();
    await callModelRoute([target(primary)], ask(), deps(health()));
    const { endpointId } = await row(primary);
    const owner = await db().owner();
    await owner.query(
      `UPDATE provider_endpoints SET state = 'open', forced = true WHERE endpoint_id = $1`,
      [endpointId],
    );
    const runtime = await db().pool.connect(async (c) => {
      const { sql } = await import('slonik');
      const updated = await c.query(
        sql.unsafe`UPDATE provider_endpoints SET state = 'closed', forced = false WHERE endpoint_id = ${endpointId}`,
      );
      const deleted = await c
        .query(sql.unsafe`DELETE FROM provider_endpoints WHERE endpoint_id = ${endpointId}`)
        .then(
          () => 'deleted',
          (e: unknown) => String(e),
        );
      return { updated: updated.rowCount, deleted };
    });
    expect(runtime.updated).toBe(0);
    expect(runtime.deleted).toMatch(/permission denied/);
    expect(await row(primary)).toMatchObject({ state: 'open', forced: true });
    // Held open: past any cool-down, no probe reaches it.
    const error = await rejection(callModelRoute([target(primary)], ask(), deps(health())));
    expect(error.code).toBe('MODEL_CIRCUIT_OPEN');
    expect(primary.requests).toHaveLength(1);
  });
});
