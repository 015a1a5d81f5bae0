// `npm run bench:ingress`: autocannon against AwoooP's Telegram webhook ingress and, in the
// same invocation, against a bare Koa server doing one INSERT and one queue.add for the same
// body. Only ingress runs (no workers): the jobs it adds are deleted with the Redis prefix.
import { availableParallelism } from 'node:os';
import { resolve as resolvePath } from 'node:path';
import { parseArgs } from 'node:util';
import autocannon, { type AutocannonResult } from 'autocannon';
import { Redis } from 'ioredis';
import { BARE_INGRESS_PATH } from './bareIngress.ts';
import { createBenchDatabase, dropBenchDatabase, withClient } from './benchDatabase.ts';
import { applyBenchTenant, BENCH_TELEGRAM_ACCOUNT } from './benchTenant.ts';
import { deleteRedisPrefix } from '../deleteRedisPrefix.ts';
import { benchPrefix } from './benchPrefix.ts';
import { freePort } from '../freePort.ts';
import { spawnChild } from './spawnChild.ts';
import { median, round } from './stats.ts';
import { telegramBody } from './telegramBody.ts';

const REDIS_URL = 'redis://127.0.0.1:6379';

/** One target's figures over the rounds (medians). */
type IngressFigures = { req_per_s: number; p50_ms: number; p99_ms: number; non_2xx: number };

const { values } = parseArgs({
  options: {
    connections: { type: 'string', default: '50' },
    duration: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '2' },
    rounds: { type: 'string', default: '1' },
    database: { type: 'string', default: 'awooop_bench_ingress' },
    json: { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
    'cpu-prof': { type: 'string' },
  },
});
const connections = Number(values.connections);
const duration = Number(values.duration);
const warmup = Number(values.warmup);
const rounds = Number(values.rounds);
const log = (line: string) => process.stderr.write(`${line}\n`);

/** Posts a fresh Telegram update (new `update_id`) on every request for `seconds`. */
async function hammer(
  port: number,
  path: string,
  headers: Record<string, string>,
  seconds: number,
  ids: { next: number },
): Promise<AutocannonResult> {
  return autocannon({
    url: `http://127.0.0.1:${port}`,
    connections,
    duration: seconds,
    requests: [
      {
        method: 'POST',
        path,
        headers: { ...headers, 'content-type': 'application/json' },
        setupRequest: (request) => ({ ...request, body: telegramBody(ids.next++) }),
      },
    ],
  });
}

async function main(): Promise<void> {
  const prefix = benchPrefix('awbenchin');
  const redis = new Redis(REDIS_URL, { lazyConnect: true });
  try {
    await redis.connect();
    log(`preparing database ${values.database} and Redis prefix ${prefix}`);
    const url = await createBenchDatabase(values.database);
    const tenant = await applyBenchTenant(url);
    const env = {
      ...process.env,
      DATABASE_URL: url,
      REDIS_URL,
      AWOOOP_REDIS_PREFIX: prefix,
      AWOOOP_SECRET_KEY: tenant.secretKeyHex,
      LOG_LEVEL: 'info',
      NODE_ENV: 'production',
    };
    const targets = {
      awooop: {
        args: ['ops/awooop.ts', 'web'],
        ready: /^web listening/,
        path: `/webhooks/telegram/${tenant.projectId}/${BENCH_TELEGRAM_ACCOUNT}`,
        headers: { 'x-telegram-bot-api-secret-token': tenant.webhookSecret },
      },
      bare: {
        args: ['ops/bench/baselineProcess.ts', '--hops=none', '--ingress'],
        ready: /^baseline ready/,
        path: BARE_INGRESS_PATH,
        headers: {},
      },
    };
    const ids = { next: Date.now() % 1_000_000_000 };
    const results: Record<keyof typeof targets, AutocannonResult[]> = { awooop: [], bare: [] };
    for (let r = 1; r <= rounds; r += 1) {
      for (const name of ['bare', 'awooop'] as const) {
        const target = targets[name];
        const port = await freePort();
        const child = await spawnChild({
          name,
          args: target.args,
          env: { ...env, PORT: String(port) },
          ready: [target.ready],
          nodeArgs:
            values['cpu-prof'] && name === 'awooop'
              ? ['--cpu-prof', `--cpu-prof-dir=${resolvePath(values['cpu-prof'])}`]
              : [],
        });
        try {
          if (warmup > 0) await hammer(port, target.path, target.headers, warmup, ids);
          const result = await hammer(port, target.path, target.headers, duration, ids);
          results[name].push(result);
          // autocannon stops at the deadline with requests in flight: let them finish first.
          await new Promise((r) => setTimeout(r, 1000));
          log(
            `round ${r} ${name}: ${(result['2xx'] / result.duration).toFixed(0)} req/s, p50 ${result.latency.p50} ms, p99 ${result.latency.p99} ms, non-2xx ${result.non2xx}, errors ${result.errors}`,
          );
        } finally {
          await child.stop();
        }
      }
    }
    const runs = await withClient(url, async (c) =>
      Number((await c.query<{ n: string }>('SELECT count(*) AS n FROM runs')).rows[0]!.n),
    );
    const okAwooop = results.awooop.reduce((s, r) => s + r['2xx'], 0);
    const summary = {
      connections,
      duration_s: duration,
      rounds,
      ingress: figures(results.awooop),
      bare: figures(results.bare),
      ratio: 0,
      node: process.version,
      cpus: availableParallelism(),
    };
    summary.ratio = round(summary.ingress.req_per_s / summary.bare.req_per_s, 3);
    const table = [
      `Ingress bench: ${connections} connections, ${duration} s, ${rounds} round(s), a fresh update_id per request`,
      '',
      `${''.padEnd(22)}${'req/s'.padStart(10)}${'p50 ms'.padStart(10)}${'p99 ms'.padStart(10)}${'non-2xx'.padStart(10)}`,
      line('AwoooP Telegram webhook', summary.ingress),
      line('bare Koa INSERT + add', summary.bare),
      '',
      `ratio ${summary.ratio.toFixed(3)} (req/s); p99 ack ${summary.ingress.p99_ms} ms`,
      `AwoooP: ${okAwooop} measured 2xx answers; ${runs} runs in the database (warm-up included)`,
    ].join('\n');
    if (values.json) {
      log(table);
      process.stdout.write(`${JSON.stringify(summary)}\n`);
    } else process.stdout.write(`${table}\n`);
  } finally {
    const keys = await deleteRedisPrefix(redis, prefix).catch(() => 0);
    log(`deleted ${keys} Redis keys under ${prefix}:`);
    redis.disconnect();
    if (!values.keep) await dropBenchDatabase(values.database).catch(() => {});
  }
}

function figures(results: readonly AutocannonResult[]): IngressFigures {
  return {
    req_per_s: round(median(results.map((r) => r['2xx'] / r.duration))),
    p50_ms: round(median(results.map((r) => r.latency.p50))),
    p99_ms: round(median(results.map((r) => r.latency.p99))),
    non_2xx: results.reduce((s, r) => s + r.non2xx + r.errors, 0),
  };
}

function line(name: string, f: IngressFigures): string {
  return `${name.padEnd(22)}${f.req_per_s.toFixed(0).padStart(10)}${f.p50_ms.toFixed(1).padStart(10)}${f.p99_ms.toFixed(1).padStart(10)}${String(f.non_2xx).padStart(10)}`;
}

try {
  await main();
} catch (error) {
  process.stderr.write(
    `bench:ingress: ${error instanceof Error ? error.message : String(error)}\n`,
  );
  process.exitCode = 1;
}
