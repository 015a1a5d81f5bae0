import { Redis } from 'ioredis';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findProviderEndpoint, type ProviderEndpoint } from '../../db/providerEndpoints.ts';
import { renderMetrics } from '../../ops/metrics/renderMetrics.ts';
import { callModelRoute } from '../../pipeline/agent/callModelRoute.ts';
import { createProviderHealth } from '../../pipeline/providerHealth/createProviderHealth.ts';
import type { ModelRequest } from '../../pipeline/agent/modelTypes.ts';
import { ModelTarget } from '../../pipeline/contracts/policyContract.ts';
import { createStageQueues } from '../../workers/stageQueues.ts';
import { startModelServer, type ModelServer } from '../fakes/modelServer.ts';
import { runCli } from '../helpers/runCli.ts';
import { useTestDatabase } from '../helpers/testDatabase.ts';
import { TEST_REDIS_URL, useRedisPrefix } from '../helpers/useRedisPrefix.ts';

const db = useTestDatabase();
const prefix = useRedisPrefix();
let redis: Redis;
let healthy: ModelServer;
let failing: ModelServer;

const awooop = (...args: string[]) =>
  runCli(['--actor', 'ops:alice', ...args], {
    DATABASE_URL: db().url,
    REDIS_URL: TEST_REDIS_URL,
    AWOOOP_REDIS_PREFIX: prefix,
  });

const target = (s: ModelServer) =>
  ModelTarget.parse({ provider: 'openai_compatible', model: 'm', baseUrl: s.url });
const ask = (): ModelRequest => ({
  messages: [{ role: 'user', content: 'hi' }],
  responseFormat: 'text',
  traceId: '0af7651916cd43dd8448eb211c80319c',
});
/** A call through the route as an execute worker makes it (reading the row every time). */
const call = (s: ModelServer) =>
  callModelRoute([target(s)], ask(), {
    resolveSecret: async () => 'k',
    health: createProviderHealth(
      {
        pool: db().pool,
        logger: pino({ level: 'silent' }),
        redis,
        redisPrefix: prefix,
        actor: 'worker:execute',
        now: Date.now,
      },
      { failures: 2, cooldownMs: 600_000, refreshMs: 0 },
    ),
  }).catch((error: unknown) => error);

async function row(s: ModelServer): Promise<ProviderEndpoint> {
  const found = await findProviderEndpoint(db().pool, {
    provider: 'openai_compatible',
    baseUrl: s.url,
  });
  if (!found) throw new Error(`no endpoint row for ${s.url}`);
  return found;
}

async function auditCount(): Promise<number> {
  const owner = await db().owner();
  const { rows } = await owner.query<{ n: string }>(
    "SELECT count(*) AS n FROM audit_events WHERE project_id = 'platform' AND chain LIKE 'provider:%'",
  );
  return Number(rows[0]!.n);
}

beforeAll(async () => {
  redis = new Redis(TEST_REDIS_URL, { maxRetriesPerRequest: null });
  [healthy, failing] = await Promise.all([startModelServer(), startModelServer()]);
  await call(healthy);
  failing.failNext(2, { status: 500 });
  await call(failing);
  await call(failing);
});
afterAll(async () => {
  redis.disconnect();
  await Promise.all([healthy.close(), failing.close()]);
});

describe('awooop providers', () => {
  it('lists every endpoint with its state, failures and since', async () => {
    const [ok, bad] = [await row(healthy), await row(failing)];
    const result = await awooop('providers');
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const lines = result.stdout.trim().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines.find((l) => l.includes(healthy.url))).toMatch(
      new RegExp(
        `^${ok.endpointId}  openai_compatible  \\S+  closed\\s+since \\S+Z  failures 0  opened 0$`,
      ),
    );
    expect(lines.find((l) => l.includes(failing.url))).toMatch(
      new RegExp(
        `^${bad.endpointId}  openai_compatible  \\S+  open\\s+since \\S+Z  failures 2  opened 1  last error MODEL_SERVER_ERROR  probes from \\S+Z$`,
      ),
    );
    const json = JSON.parse((await awooop('providers', 'list', '--json')).stdout) as unknown[];
    expect(json).toContainEqual(
      expect.objectContaining({ id: bad.endpointId, state: 'open', heldByOperator: false }),
    );
  });

  it('names the bad argument and changes nothing', async () => {
    const before = await auditCount();
    const { endpointId } = await row(healthy);
    const cases: [string[], RegExp][] = [
      [
        ['providers', 'open', 'abc', '--reason', 'x'],
        /ENDPOINT: expected the id of a provider endpoint/,
      ],
      [['providers', 'open', '999999', '--reason', 'x'], /ENDPOINT: no provider endpoint 999999/],
      [['providers', 'open', String(endpointId)], /--reason: required for open/],
      [['providers', 'open', String(endpointId), '--reason', ' '], /--reason: required for open/],
      [['providers', 'frob'], /providers: unknown subcommand "frob"/],
      [['providers', 'close', String(endpointId), '--force'], /--force/],
    ];
    for (const [args, message] of cases) {
      const result = await awooop(...args);
      expect(result.code, args.join(' ')).toBe(2);
      expect(result.stderr).toMatch(message);
    }
    expect(await row(healthy)).toMatchObject({ state: 'closed', forced: false, version: 1 });
    expect(await auditCount()).toBe(before);
  });

  it("holds an endpoint open on an operator's word, audited with who and why; the route skips it", async () => {
    const { endpointId } = await row(healthy);
    const result = await awooop(
      'providers',
      'open',
      String(endpointId),
      '--reason',
      'vendor maintenance',
    );
    expect(result.stderr).toBe('');
    expect(result.stdout.trim()).toBe(
      `${endpointId} openai_compatible ${healthy.url}: closed → open (held)`,
    );
    expect(await row(healthy)).toMatchObject({ state: 'open', forced: true, retryAt: null });

    const owner = await db().owner();
    const { rows } = await owner.query<{
      action: string;
      actor: string;
      detail: Record<string, unknown>;
    }>(
      `SELECT action, actor, detail FROM audit_events WHERE project_id = 'platform' AND chain = $1 ORDER BY seq`,
      [`provider:${endpointId}`],
    );
    expect(rows.at(-1)).toMatchObject({
      action: 'provider.breaker.opened',
      actor: 'ops:alice',
      detail: { from: 'closed', to: 'open', reason: 'vendor maintenance', operator: 'open' },
    });

    const seen = healthy.requests.length;
    expect(await call(healthy)).toMatchObject({ code: 'MODEL_CIRCUIT_OPEN' });
    expect(healthy.requests).toHaveLength(seen);

    // The same command again finds it so: nothing changes, no transition is written.
    const before = await auditCount();
    const again = await awooop('providers', 'open', String(endpointId), '--reason', 'again');
    expect(again.stdout).toMatch(/is already open \(held\): nothing changed/);
    expect(await auditCount()).toBe(before);

    const closed = await awooop(
      'providers',
      'close',
      String(endpointId),
      '--reason',
      'vendor is back',
    );
    expect(closed.stdout.trim()).toBe(
      `${endpointId} openai_compatible ${healthy.url}: open (held) → closed`,
    );
    expect(await call(healthy)).toMatchObject({ text: 'model: hi' });
    expect(healthy.requests).toHaveLength(seen + 1);
  });

  it('resets an opened breaker: closed, counts cleared', async () => {
    const { endpointId } = await row(failing);
    const result = await awooop(
      'providers',
      'reset',
      String(endpointId),
      '--reason',
      'fixed upstream',
    );
    expect(result.stdout.trim()).toBe(
      `${endpointId} openai_compatible ${failing.url}: open → closed`,
    );
    expect(await row(failing)).toMatchObject({
      state: 'closed',
      failures: 0,
      lastError: null,
      openedCount: 0,
    });
    expect(
      (await awooop('providers', 'reset', String(endpointId), '--reason', 'again')).stdout,
    ).toMatch(/is already closed: nothing changed/);
  });

  it('registers an endpoint for operator registration, once, naming a bad provider or URL', async () => {
    const first = await awooop(
      'providers',
      'add',
      'anthropic',
      'https://llm.example.com/',
      '--reason',
      'approved vendor',
    );
    expect(first.stderr).toBe('');
    expect(first.stdout).toMatch(
      /^\d+ anthropic https:\/\/llm\.example\.com: registered \(closed\)$/m,
    );
    const again = await awooop(
      'providers',
      'add',
      'anthropic',
      'https://llm.example.com',
      '--reason',
      'x',
    );
    expect(again.stdout).toMatch(/is already registered: nothing changed/);
    const before = await auditCount();
    for (const [args, message] of [
      [['providers', 'add', 'echo', 'https://a.example', '--reason', 'x'], /PROVIDER: expected/],
      [['providers', 'add', 'anthropic', 'ftp://a.example', '--reason', 'x'], /BASE_URL: expected/],
      [['providers', 'add', 'anthropic', 'https://b.example'], /--reason: required for add/],
    ] as [string[], RegExp][]) {
      const result = await awooop(...args);
      expect(result.code, args.join(' ')).toBe(2);
      expect(result.stderr).toMatch(message);
    }
    expect(await auditCount()).toBe(before);
  });

  it('shows every breaker in /metrics', async () => {
    failing.failNext(2, { status: 500 });
    await call(failing);
    await call(failing);
    const queues = createStageQueues(redis, prefix, { onError: () => {} });
    try {
      const text = await renderMetrics({
        pool: db().sweeperPool,
        redis,
        prefix,
        queues: queues.queues,
      });
      expect(text).toContain('# TYPE awooop_provider_breaker_state gauge');
      expect(text).toContain(
        `awooop_provider_breaker_state{provider="openai_compatible",endpoint="${failing.url}"} 2`,
      );
      expect(text).toContain(
        `awooop_provider_breaker_state{provider="openai_compatible",endpoint="${healthy.url}"} 0`,
      );
      expect(text).toContain(
        `awooop_provider_breaker_opened_total{provider="openai_compatible",endpoint="${failing.url}"} 1`,
      );
    } finally {
      await queues.close();
    }
  });
});
