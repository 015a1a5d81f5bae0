// `npm run bench`: AwoooP against the bare five-queue chain it is built on, in one invocation.
// Creates its own database and Redis prefix, removes both at the end (the database stays with
// --keep), and stops by itself. Loopback only. See parseBenchArgs for the flags.
import { mkdir } from 'node:fs/promises';
import { resolve as resolvePath } from 'node:path';
import { Redis } from 'ioredis';
import pg from 'pg';
import { BARE_INGRESS_PATH } from './bareIngress.ts';
import { createBenchDatabase, dropBenchDatabase } from './benchDatabase.ts';
import { applyBenchTenant, type BenchTenant } from './benchTenant.ts';
import { deleteRedisPrefix } from '../deleteRedisPrefix.ts';
import { benchPrefix } from './benchPrefix.ts';
import { freePort } from '../freePort.ts';
import { parseBenchArgs, type BenchOptions } from './parseBenchArgs.ts';
import type { PostTarget } from './postRuns.ts';
import { runRound, type RoundResult } from './runRound.ts';
import { startSystem, type RunningSystem, type SystemKind } from './startSystem.ts';
import { formatBench, summarizeBench } from './summarizeBench.ts';

const REDIS_URL = 'redis://127.0.0.1:6379';

/** What each half posts: the same API message body, to AwoooP's API or to the bare ingress. */
function targetFor(
  kind: SystemKind,
  port: number,
  tenant: BenchTenant,
  options: BenchOptions,
  tag: string,
): PostTarget {
  const body = (i: number) =>
    JSON.stringify({
      text: `bench message ${i}: where is my order? Please answer briefly.`,
      conversation_id:
        options.conversations === undefined
          ? `c-${tag}-${i}`
          : `c-${tag}-${Math.abs(i) % options.conversations}`,
      sender_id: `u-${Math.abs(i) % 10_000}`,
    });
  return kind === 'pipeline'
    ? {
        port,
        path: `/v1/projects/${tenant.projectId}/messages`,
        headers: { authorization: `Bearer ${tenant.apiKey}` },
        body,
      }
    : { port, path: BARE_INGRESS_PATH, headers: {}, body };
}

async function main(options: BenchOptions): Promise<void> {
  const log = (line: string) => process.stderr.write(`${line}\n`);
  const prefix = benchPrefix('awbench');
  const redis = new Redis(REDIS_URL, { lazyConnect: true });
  let db: pg.Client | undefined;
  let running: RunningSystem | undefined;
  let cleaned: Promise<void> | undefined;
  const cleanup = () =>
    (cleaned ??= (async () => {
      await running?.stop().catch(() => {});
      await db?.end().catch(() => {});
      const keys = await deleteRedisPrefix(redis, prefix).catch(() => 0);
      log(`deleted ${keys} Redis keys under ${prefix}:`);
      redis.disconnect();
      if (!options.keep) await dropBenchDatabase(options.database).catch(() => {});
    })());
  const interrupted = () => void cleanup().finally(() => process.exit(130));
  process.once('SIGINT', interrupted);
  process.once('SIGTERM', interrupted);

  try {
    await redis.connect();
    log(`preparing database ${options.database} and Redis prefix ${prefix}`);
    const url = await createBenchDatabase(options.database);
    const tenant = await applyBenchTenant(url);
    db = new pg.Client({ connectionString: url, application_name: 'awooop-bench' });
    await db.connect();
    const env = {
      DATABASE_URL: url,
      REDIS_URL,
      AWOOOP_REDIS_PREFIX: prefix,
      AWOOOP_SECRET_KEY: tenant.secretKeyHex,
      AWOOOP_WORKER_CONCURRENCY: String(options.concurrency),
      LOG_LEVEL: 'info',
      NODE_ENV: 'production',
    };
    let nodeArgs: string[] = [];
    if (options.cpuProf) {
      const dir = resolvePath(options.cpuProf);
      await mkdir(dir, { recursive: true });
      nodeArgs = ['--cpu-prof', `--cpu-prof-dir=${dir}`];
    }
    const halves: SystemKind[] = options.only ? [options.only] : ['baseline', 'pipeline'];
    const memoryBefore = await redisUsedMb(redis);
    const results: RoundResult[] = [];
    for (let round = 1; round <= options.rounds; round += 1) {
      for (const kind of halves) {
        const port = await freePort();
        running = await startSystem({
          kind,
          layout: options.layout,
          port,
          env,
          nodeArgs: kind === 'pipeline' ? nodeArgs : [],
          write: options.baselineWrite,
        });
        log(
          `round ${round}: ${kind} (${running.workers.map((w) => `${w.name} pid ${w.pid}`).join(', ')})`,
        );
        const result = await runRound(
          db,
          kind,
          running,
          targetFor(kind, port, tenant, options, `r${round}`),
          {
            count: options.runs,
            warmup: options.warmup,
            connections: options.connections,
            rate: options.rate,
            timeoutMs: options.timeoutS * 1000,
          },
        );
        await running.stop();
        running = undefined;
        results.push(result);
        log(
          `  ${result.runs} runs, ${result.runsPerS.toFixed(1)} runs/s, p50 ${result.p50Ms.toFixed(1)} ms, p99 ${result.p99Ms.toFixed(1)} ms` +
            (result.failed + result.unfinished + result.posted.refused > 0
              ? `, failed ${result.failed}, unfinished ${result.unfinished}, refused ${result.posted.refused}`
              : ''),
        );
      }
    }
    const summary = summarizeBench(options, results);
    const report = formatBench(summary, results);
    const memoryAfter = await redisUsedMb(redis);
    const redisLine = `Redis used_memory: ${memoryBefore.toFixed(1)} MB before, ${memoryAfter.toFixed(1)} MB after the rounds (completed jobs are removed)`;
    if (options.json) {
      log(`${report}\n${redisLine}`);
      process.stdout.write(`${JSON.stringify(summary)}\n`);
    } else {
      process.stdout.write(`${report}\n${redisLine}\n`);
    }
    if (options.cpuProf) log(`CPU profiles in ${resolvePath(options.cpuProf)}`);
  } finally {
    await cleanup();
  }
}

async function redisUsedMb(redis: Redis): Promise<number> {
  const info = await redis.info('memory');
  return Number(/^used_memory:(\d+)/m.exec(info)?.[1] ?? NaN) / 1024 / 1024;
}

try {
  await main(parseBenchArgs(process.argv.slice(2)));
} catch (error) {
  process.stderr.write(`bench: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = 1;
}
