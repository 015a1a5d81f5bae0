// `npm run chaos`: faults under load against the real processes; nothing accepted may be lost
// or answered twice. See parseChaosOptions.ts for the flags.
import { randomBytes, randomInt } from 'node:crypto';
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { startDiscordGateway } from '../fakes/discordGateway.ts';
import { startDiscordRestServer } from '../fakes/discordRestServer.ts';
import { startSlackServer } from '../fakes/slackServer.ts';
import { startTelegramServer } from '../fakes/telegramServer.ts';
import { awaitQuiescence } from './awaitQuiescence.ts';
import { chaosReport, detailLine, summaryLine } from './chaosReport.ts';
import { driveLoad, type LoadItem } from './driveLoad.ts';
import { freePort } from '../freePort.ts';
import { injectFaults } from './injectFaults.ts';
import { CHAOS_USAGE, parseChaosOptions, type ChaosOptions } from './parseChaosOptions.ts';
import {
  CHAOS_PROJECT,
  dropDatabase,
  prepareChaosDatabase,
  DISCORD_BOT_TOKEN,
  SLACK_BOT_TOKEN,
} from './prepareChaosDatabase.ts';
import { readChaosRuns, type ChaosRun } from './readChaosRuns.ts';
import { startPrivateRedis } from './startPrivateRedis.ts';
import { startSupervisor } from './startSupervisor.ts';
import { tallyChaos } from './tallyChaos.ts';

/** How long a killed worker's job stays locked: short, so recovery happens within the run. */
const JOB_LOCK_MS = 5000;
const STALL_MS = 3000;
const SWEEP_INTERVAL_MS = 1000;

const startedAt = Date.now();
const log = (line: string) =>
  process.stderr.write(`[chaos +${((Date.now() - startedAt) / 1000).toFixed(1)}s] ${line}\n`);

/** Cleanup steps, run once, last registered first: on the way out and on SIGINT/SIGTERM. */
const cleanups: (() => Promise<unknown>)[] = [];
let cleaning: Promise<void> | null = null;
const cleanUp = () =>
  (cleaning ??= (async () => {
    for (const step of cleanups.reverse()) {
      await step().catch((error: unknown) => log(`cleanup: ${String(error)}`));
    }
  })());

/**
 * Names each Discord message's runs: those of its channel (a message per channel, so more
 * than one is a duplicate run). A webhook's answer names its run; a Gateway dispatch gets none.
 */
function nameDiscordRuns(items: readonly LoadItem[], runs: readonly ChaosRun[]): void {
  const byChannel = new Map<string, string[]>();
  for (const r of runs) {
    const id = r.conversationKey.split('/')[3] ?? '';
    byChannel.set(id, [...(byChannel.get(id) ?? []), r.runId]);
  }
  for (const item of items) {
    if (item.channel !== 'discord') continue;
    for (const id of byChannel.get(item.conversation) ?? []) item.runIds.add(id);
  }
}

/** mulberry32: a small seeded generator, so a run's choices can be replayed with --seed. */
function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

async function main(options: ChaosOptions): Promise<number> {
  const seed = options.seed ?? randomInt(2 ** 31);
  const random = seededRandom(seed);
  const logFile = `${tmpdir()}/awooop-chaos-${startedAt}.log`;
  log(`seed ${seed}; rate ${options.rate}/s for ${options.duration}s; processes log to ${logFile}`);

  const telegram = await startTelegramServer();
  cleanups.push(() => telegram.close());
  const slack = await startSlackServer({ token: SLACK_BOT_TOKEN });
  cleanups.push(() => slack.close());
  const discordRest = await startDiscordRestServer({ token: DISCORD_BOT_TOKEN });
  cleanups.push(() => discordRest.close());
  const gateway = await startDiscordGateway({ token: DISCORD_BOT_TOKEN });
  cleanups.push(() => gateway.close());
  discordRest.setGatewayUrl(gateway.url);
  const sent = () => telegram.sent.length + slack.posts.length + discordRest.posts.length;
  const redis = await startPrivateRedis();
  cleanups.push(() => redis.stop());
  const secretKey = randomBytes(32);
  const db = await prepareChaosDatabase({
    database: options.database,
    telegramApiRoot: telegram.apiRoot,
    slackApiBaseUrl: slack.apiBaseUrl,
    discord: { apiBaseUrl: discordRest.apiBaseUrl, gatewayUrl: gateway.url },
    secretKey,
  });
  cleanups.push(async () => {
    if (!options.keep) await dropDatabase(options.database);
  });
  cleanups.push(() => db.pool.end());

  const port = await freePort();
  const supervisor = startSupervisor({
    port,
    logFile,
    env: {
      ...process.env,
      DATABASE_URL: db.url,
      REDIS_URL: redis.url,
      PORT: String(port),
      AWOOOP_REDIS_PREFIX: 'chaos',
      AWOOOP_SECRET_KEY: secretKey.toString('hex'),
      AWOOOP_STALL_MS: String(STALL_MS),
      AWOOOP_SWEEP_INTERVAL_MS: String(SWEEP_INTERVAL_MS),
      AWOOOP_JOB_LOCK_MS: String(JOB_LOCK_MS),
      AWOOOP_WORKER_CONCURRENCY: String(options.concurrency),
      LOG_LEVEL: 'warn',
      NODE_ENV: 'development',
    },
  });
  cleanups.push(() => supervisor.stop(25_000));
  await supervisor.ready(60_000);
  const setupMs = Date.now() - startedAt;
  log(`platform up on 127.0.0.1:${port} (supervisor pid ${supervisor.pid}, redis ${redis.url})`);

  const durationMs = options.duration * 1000;
  const loadStart = Date.now();
  const faults = injectFaults({
    supervisor,
    redis,
    database: options.database,
    durationMs,
    killEveryMs: options['kill-every'] * 1000,
    infra: !options['no-infra-faults'],
    random,
    dropGateway: () => {
      gateway.drop();
      return `${gateway.connections()} connections so far`;
    },
    log,
  });
  const load = driveLoad({
    baseUrl: `http://127.0.0.1:${port}`,
    projectId: CHAOS_PROJECT,
    apiKey: db.apiKey,
    webhookSecret: db.webhookSecret,
    telegramAccount: 'tg',
    slackAccount: db.slack.account,
    slackSigningSecret: db.slack.signingSecret,
    rate: options.rate,
    durationMs,
    telegramShare: options.telegram,
    slackShare: options.slack,
    discordShare: options.discord,
    dispatchDiscord: (message) => void gateway.dispatch('MESSAGE_CREATE', message),
    duplicateShare: options.duplicates,
    retryForMs: 30_000,
    requestTimeoutMs: 15_000,
    random,
  });
  const progress = setInterval(() => {
    const failed = Object.entries(load.counts.byStatus)
      .filter(([status]) => !status.startsWith('2'))
      .reduce((sum, [, n]) => sum + n, 0);
    log(
      `load: ${load.items.length} sent, ${load.items.filter((i) => i.accepted).length} accepted, ` +
        `${failed} failed requests, ${load.inFlight()} in flight, ` +
        `${sent()} messages (${slack.posts.length} on Slack, ${discordRest.posts.length} on Discord)`,
    );
  }, 10_000);
  await load.done;
  clearInterval(progress);
  await faults.stop();
  const loadMs = Date.now() - loadStart;
  log(`load over: ${load.items.length} messages, ${load.counts.requests} requests`);

  // Discord answers a dispatch with nothing: its runs are found by their channels, first
  // once every dispatched message has one (or the drain runs out), so quiescence waits on them.
  const discordItems = load.items.filter((i) => i.channel === 'discord');
  const drainUntil = Date.now() + options.drain * 1000;
  while (Date.now() < drainUntil) {
    nameDiscordRuns(load.items, await readChaosRuns(db.pool, CHAOS_PROJECT));
    if (discordItems.every((i) => i.runIds.size > 0)) break;
    await new Promise((r) => setTimeout(r, 500));
  }
  log(
    `${discordItems.filter((i) => i.runIds.size > 0).length}/${discordItems.length} Discord messages have a run`,
  );
  const acceptedRunIds = () => load.items.flatMap((i) => (i.accepted ? [...i.runIds] : []));
  const quiescence = await awaitQuiescence({
    pool: db.pool,
    projectId: CHAOS_PROJECT,
    runIds: acceptedRunIds,
    messages: sent,
    quietMs: options.quiet * 1000,
    timeoutMs: options.drain * 1000,
    log,
  });
  log(quiescence.quiet ? 'quiet' : `not quiet after ${options.drain}s`);

  const runs = await readChaosRuns(db.pool, CHAOS_PROJECT);
  nameDiscordRuns(load.items, runs);
  const tally = tallyChaos({
    items: load.items,
    runs,
    received: [
      ...telegram.sent,
      ...slack.posts.map((p) => ({ chat_id: p.channel, text: p.text })),
      ...discordRest.posts.map((p) => ({ chat_id: p.channelId, text: String(p.body.content) })),
    ],
    replyPrefix: 'echo: ',
    statusText: 'Working on it',
  });
  const report = chaosReport({
    options,
    seed,
    tally,
    counts: load.counts,
    sent: load.items.length,
    faults: faults.faults,
    quiescence,
    timings: {
      setupMs,
      loadMs,
      drainMs: quiescence.waitedMs,
      totalMs: Date.now() - startedAt,
    },
    logFile,
  });
  const bad = report.lost > 0 || report.duplicated > 0;
  if (options.json) {
    process.stderr.write(`${summaryLine(report)}\n${detailLine(report)}\n`);
    process.stdout.write(`${JSON.stringify(report)}\n`);
  } else {
    process.stdout.write(`${summaryLine(report)}\n${detailLine(report)}\n`);
    for (const f of [...report.details.lost_runs, ...report.details.duplicated_runs]) {
      process.stdout.write(`  ${JSON.stringify(f)}\n`);
    }
  }
  // The process log is kept when it may explain something, or when asked.
  if (!bad && !options.keep)
    cleanups.unshift(() => Promise.resolve(rmSync(logFile, { force: true })));
  return bad ? 1 : 0;
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    log(`${signal}: cleaning up`);
    void cleanUp().finally(() => process.exit(130));
  });
}

let options: ChaosOptions;
try {
  options = parseChaosOptions(process.argv.slice(2));
} catch (error) {
  process.stderr.write(`chaos: ${(error as Error).message}\n\n${CHAOS_USAGE}\n`);
  process.exit(2);
}
if (options.help) {
  process.stdout.write(`${CHAOS_USAGE}\n`);
  process.exit(0);
}
// A hard bound, whatever hangs: setup, load, retries, drain and cleanup all fit well inside.
const watchdog = setTimeout(
  () => {
    log('watchdog: the run took too long; cleaning up');
    void cleanUp().finally(() => process.exit(3));
  },
  (options.duration + options.drain + 240) * 1000,
);
watchdog.unref();
try {
  process.exitCode = await main(options);
} catch (error) {
  log(`failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
  process.exitCode = 2;
} finally {
  await cleanUp();
}
// Stray handles (keep-alive sockets, timers of fakes) must not keep a finished run alive.
process.exit();
