// `npm run bench:admission -- --mode fairness|overload`: admission and fairness, measured.
//
// fairness: tenant B sends at a steady rate, first alone, then while tenant A sends at ten
// times its per-minute limit; prints B's p50 / p99 from acceptance to COMPLETED in both phases
// and how A's requests ended (completed, refused with Retry-After, anything else).
// overload: one tenant sends at twice the rate the platform sustains (measured first, or
// --sustainable) for --seconds; prints accepted, completed, lost, refused, and refusals
// without Retry-After.
//
// Creates its own database and Redis prefix and removes both at the end. Loopback only.
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import pg from 'pg';
import { deleteRedisPrefix } from '../deleteRedisPrefix.ts';
import { freePort } from '../freePort.ts';
import { createBenchDatabase, dropBenchDatabase } from './benchDatabase.ts';
import { benchPrefix } from './benchPrefix.ts';
import { applyBenchTenant, type BenchTenant } from './benchTenant.ts';
import { postAtRate, type RateReport } from './postAtRate.ts';
import { postRuns, type PostTarget } from './postRuns.ts';
import { startSystem, type RunningSystem } from './startSystem.ts';
import { round } from './stats.ts';

const REDIS_URL = 'redis://127.0.0.1:6379';

const USAGE = `usage: npm run bench:admission -- --mode fairness|overload [--seconds S]
  fairness: [--limit-a PER_S] [--rate-b PER_S]     (A sends at 10x --limit-a)
  overload: [--sustainable RUNS_PER_S] [--backlog N]
  [--database NAME]`;

type Options = {
  mode: 'fairness' | 'overload';
  seconds: number;
  limitA: number;
  rateB: number;
  sustainable: number | undefined;
  backlog: number | undefined;
  database: string;
};

function parseOptions(argv: readonly string[]): Options {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      mode: { type: 'string' },
      seconds: { type: 'string' },
      'limit-a': { type: 'string', default: '5' },
      'rate-b': { type: 'string', default: '5' },
      sustainable: { type: 'string' },
      backlog: { type: 'string' },
      database: { type: 'string', default: 'awooop_bench_admission' },
    },
  });
  const num = (name: string, value: string | undefined) => {
    const n = Number(value);
    if (!Number.isFinite(n) || n <= 0)
      throw new Error(`--${name}: expected a number > 0\n${USAGE}`);
    return n;
  };
  if (values.mode !== 'fairness' && values.mode !== 'overload')
    throw new Error(`--mode: one of fairness, overload\n${USAGE}`);
  return {
    mode: values.mode,
    seconds: num('seconds', values.seconds ?? (values.mode === 'fairness' ? '30' : '60')),
    limitA: num('limit-a', values['limit-a']),
    rateB: num('rate-b', values['rate-b']),
    sustainable:
      values.sustainable === undefined ? undefined : num('sustainable', values.sustainable),
    backlog: values.backlog === undefined ? undefined : Math.ceil(num('backlog', values.backlog)),
    database: values.database,
  };
}

/** An API message to `tenant`, each one a conversation of its own. */
function target(port: number, tenant: BenchTenant, tag: string): PostTarget {
  return {
    port,
    path: `/v1/projects/${tenant.projectId}/messages`,
    headers: { authorization: `Bearer ${tenant.apiKey}` },
    body: (i) =>
      JSON.stringify({
        text: `bench message ${i}: where is my order?`,
        conversation_id: `c-${tag}-${i}`,
        sender_id: `u-${tag}-${i % 1000}`,
      }),
  };
}

type RunFigures = {
  runs: number;
  completed: number;
  failed: number;
  unfinished: number;
  p50Ms: number;
  p99Ms: number;
  /** Runs finished per second, first acceptance to last finish. */
  runsPerS: number;
};

/**
 * What the database says about these runs: how they ended, and acceptance → finish times
 * (of those accepted `skipMs` or more after the first of them, when given).
 */
async function figures(db: pg.Client, runIds: readonly string[], skipMs = 0): Promise<RunFigures> {
  const { rows } = await db.query<{
    n: string;
    completed: string;
    failed: string;
    q: number[] | null;
    span: number | null;
  }>(
    `SELECT count(*) AS n,
            count(*) FILTER (WHERE state = 'COMPLETED') AS completed,
            count(*) FILTER (WHERE state = 'FAILED') AS failed,
            percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP
              (ORDER BY extract(epoch FROM completed_at - created_at) * 1000)
              FILTER (WHERE state = 'COMPLETED') AS q,
            (extract(epoch FROM max(completed_at) - min(created_at)) * 1000)::float8 AS span
       FROM runs WHERE run_id = ANY($1::uuid[])
        AND created_at >= (SELECT min(created_at) FROM runs WHERE run_id = ANY($1::uuid[]))
                          + make_interval(secs => $2::float8 / 1000)`,
    [runIds, skipMs],
  );
  const row = rows[0]!;
  const completed = Number(row.completed);
  const failed = Number(row.failed);
  return {
    runs: Number(row.n),
    completed,
    failed,
    unfinished: Number(row.n) - completed - failed,
    p50Ms: row.q?.[0] ?? Number.NaN,
    p99Ms: row.q?.[1] ?? Number.NaN,
    runsPerS: row.span ? ((completed + failed) / row.span) * 1000 : Number.NaN,
  };
}

/** Waits until every one of `runIds` has finished, or `timeoutMs` has passed. */
async function drain(db: pg.Client, runIds: readonly string[], timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    const { rows } = await db.query<{ n: string }>(
      `SELECT count(*) AS n FROM runs
        WHERE run_id = ANY($1::uuid[]) AND state NOT IN ('COMPLETED', 'FAILED')`,
      [runIds],
    );
    if (Number(rows[0]!.n) === 0) return;
    await new Promise((r) => setTimeout(r, 500));
  }
}

const ms = (v: number) => `${round(v, 0)} ms`;
const refusedOther = (r: RateReport) => Object.values(r.refusedOther).reduce((a, b) => a + b, 0);

async function fairness(
  options: Options,
  db: pg.Client,
  port: number,
  a: BenchTenant,
  b: BenchTenant,
  log: (line: string) => void,
): Promise<string[]> {
  const drainMs = 120_000 + options.seconds * 10_000;
  log(`warm-up: B at ${options.rateB}/s for 5 s`);
  const warm = await postAtRate(target(port, b, 'warm'), { rate: options.rateB, seconds: 5 });
  await drain(db, warm.runIds, drainMs);

  log(`phase 1: B alone at ${options.rateB}/s for ${options.seconds} s`);
  const alone = await postAtRate(target(port, b, 'alone'), {
    rate: options.rateB,
    seconds: options.seconds,
  });
  await drain(db, alone.runIds, drainMs);
  const bAlone = await figures(db, alone.runIds);

  const rateA = options.limitA * 10;
  log(`phase 2: B at ${options.rateB}/s with A at ${rateA}/s (10x its ${options.limitA}/s)`);
  const [withA, flood] = await Promise.all([
    postAtRate(target(port, b, 'with'), { rate: options.rateB, seconds: options.seconds }),
    postAtRate(target(port, a, 'flood'), { rate: rateA, seconds: options.seconds }),
  ]);
  await drain(db, [...withA.runIds, ...flood.runIds], drainMs);
  const bWith = await figures(db, withA.runIds);
  const aRuns = await figures(db, flood.runIds);
  // A's burst (a tenth of a minute's worth) lands at the phase's start: B after it.
  const bLater = await figures(db, withA.runIds, 5000);
  const ratio = bWith.p99Ms / bAlone.p99Ms;
  return [
    `fairness: A limited to ${options.limitA}/s (${options.limitA * 60}/min), sending ${rateA}/s; B at ${options.rateB}/s; ${options.seconds} s a phase`,
    `  B alone:  ${bAlone.completed}/${alone.sent} completed, p50 ${ms(bAlone.p50Ms)}, p99 ${ms(bAlone.p99Ms)}`,
    `  B with A: ${bWith.completed}/${withA.sent} completed, p50 ${ms(bWith.p50Ms)}, p99 ${ms(bWith.p99Ms)} (p99 ${round(ratio, 2)}x alone)`,
    `  B with A, accepted 5 s or more into the phase: p50 ${ms(bLater.p50Ms)}, p99 ${ms(bLater.p99Ms)} (${bLater.completed} runs)`,
    `  A: sent ${flood.sent}, accepted ${flood.accepted}, completed ${aRuns.completed}, failed ${aRuns.failed}, unfinished ${aRuns.unfinished}, refused with Retry-After ${flood.refusedWithRetryAfter}, other answers ${refusedOther(flood)} ${JSON.stringify(flood.refusedOther)}`,
    `  B refused: alone ${alone.refusedWithRetryAfter + refusedOther(alone)}, with A ${withA.refusedWithRetryAfter + refusedOther(withA)}`,
  ];
}

async function overload(
  options: Options,
  db: pg.Client,
  port: number,
  tenant: BenchTenant,
  sustainable: number,
  log: (line: string) => void,
): Promise<string[]> {
  const rate = sustainable * 2;
  log(`overload: ${round(rate, 1)}/s (2x ${round(sustainable, 1)}/s) for ${options.seconds} s`);
  const sent = await postAtRate(target(port, tenant, 'over'), { rate, seconds: options.seconds });
  await drain(db, sent.runIds, 600_000);
  const runs = await figures(db, sent.runIds);
  const lost = sent.accepted - runs.completed - runs.failed;
  const sorted = [...sent.answerMs].sort((x, y) => x - y);
  const at = (p: number) =>
    sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? NaN;
  return [
    `overload: ${round(rate, 1)} req/s for ${options.seconds} s (sustainable ${round(sustainable, 1)} runs/s), backlog bound ${options.backlog}`,
    `  sent ${sent.sent}, accepted ${sent.accepted}, completed ${runs.completed}, failed ${runs.failed}, lost ${lost}`,
    `  refused ${sent.refusedWithRetryAfter + refusedOther(sent)}, of them without Retry-After ${refusedOther(sent)} ${JSON.stringify(sent.refusedOther)}`,
    `  answer p50 ${ms(at(0.5))}, p99 ${ms(at(0.99))}; accepted runs p50 ${ms(runs.p50Ms)}, p99 ${ms(runs.p99Ms)} to COMPLETED; ${round(runs.runsPerS, 1)} runs/s`,
  ];
}

/** Runs finished per second under a closed-loop burst: what the platform sustains here. */
async function measureSustainable(
  db: pg.Client,
  port: number,
  tenant: BenchTenant,
  log: (line: string) => void,
): Promise<number> {
  log('measuring the sustainable rate: a burst of 600 runs, 32 in flight');
  const ids: string[] = [];
  const t = target(port, tenant, 'cal');
  await postRuns(t, { count: 600, connections: 32 });
  const { rows } = await db.query<{ run_id: string }>(
    `SELECT run_id FROM runs WHERE project_id = $1`,
    [tenant.projectId],
  );
  ids.push(...rows.map((r) => r.run_id));
  await drain(db, ids, 300_000);
  return (await figures(db, ids)).runsPerS;
}

async function main(options: Options): Promise<void> {
  const log = (line: string) => process.stderr.write(`${line}\n`);
  const prefix = benchPrefix('awadm');
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
      await dropBenchDatabase(options.database).catch(() => {});
    })());
  const interrupted = () => void cleanup().finally(() => process.exit(130));
  process.once('SIGINT', interrupted);
  process.once('SIGTERM', interrupted);
  try {
    await redis.connect();
    log(`preparing database ${options.database} and Redis prefix ${prefix}`);
    const url = await createBenchDatabase(options.database);
    const secretKey = randomBytes(32);
    const tenants =
      options.mode === 'fairness'
        ? [
            await applyBenchTenant(url, {
              projectId: 'tenant-a',
              limits: { messagesPerMinute: Math.round(options.limitA * 60) },
              secretKey,
            }),
            await applyBenchTenant(url, { projectId: 'tenant-b', secretKey }),
          ]
        : [await applyBenchTenant(url, { projectId: 'tenant-o', secretKey })];
    db = new pg.Client({ connectionString: url, application_name: 'awooop-bench' });
    await db.connect();
    const port = await freePort();
    const start = (backlog: number | undefined) =>
      startSystem({
        kind: 'pipeline',
        layout: 'one',
        port,
        env: {
          DATABASE_URL: url,
          REDIS_URL,
          AWOOOP_REDIS_PREFIX: prefix,
          AWOOOP_SECRET_KEY: secretKey.toString('hex'),
          LOG_LEVEL: 'info',
          NODE_ENV: 'production',
          ...(backlog === undefined
            ? {}
            : {
                AWOOOP_MAX_BACKLOG: String(backlog),
                AWOOOP_PROJECT_MAX_BACKLOG: String(backlog),
              }),
        },
      });
    let lines: string[];
    if (options.mode === 'fairness') {
      running = await start(undefined);
      lines = await fairness(options, db, port, tenants[0]!, tenants[1]!, log);
    } else {
      running = await start(options.backlog ?? 100_000);
      const sustainable =
        options.sustainable ?? (await measureSustainable(db, port, tenants[0]!, log));
      await running.stop();
      // A backlog the platform works off in about five seconds, unless one was given.
      options.backlog ??= Math.max(10, Math.ceil(sustainable * 5));
      running = await start(options.backlog);
      lines = await overload(options, db, port, tenants[0]!, sustainable, log);
    }
    process.stdout.write(`${lines.join('\n')}\n`);
  } finally {
    await cleanup();
  }
}

try {
  await main(parseOptions(process.argv.slice(2)));
} catch (error) {
  process.stderr.write(`bench: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = 1;
}
