// `npm run bench:isolation`: how much one tenant's hung dependencies slow another. Tenant B
// (API channel, no tools) is measured alone, then while tenant A sends as much through a
// healthy MCP server and Telegram API (A's plain load), then while A's MCP server and
// Telegram API both hang (they take every request and answer none). With `--compare`, a last
// round runs with the bulkheads' shares set past any load (as if there were none). Creates
// its own database and Redis prefix and removes both at the end. Loopback only.
//
//   npm run bench:isolation -- [--runs 150] [--rate 10] [--a-rate 10] [--compare] [--json]
import { randomBytes } from 'node:crypto';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { Redis } from 'ioredis';
import pg from 'pg';
import { pino } from 'pino';
import { z } from 'zod';
import { createApiKey } from '../../db/apiKeys.ts';
import { createDbPool } from '../../db/createDbPool.ts';
import { putSecret } from '../../db/secrets.ts';
import { withProject } from '../../db/withProject.ts';
import { sha256Hex } from '../../pipeline/contracts/canonicalJson.ts';
import { TenantFile } from '../../pipeline/contracts/tenantFile.ts';
import { applyTenant } from '../../pipeline/control/applyTenant.ts';
import { sealSecret, secretAad } from '../../pipeline/secrets/secretBox.ts';
import { deleteRedisPrefix } from '../deleteRedisPrefix.ts';
import { startTelegramServer } from '../fakes/telegramServer.ts';
import { freePort } from '../freePort.ts';
import { createBenchDatabase, dropBenchDatabase } from './benchDatabase.ts';
import { benchPrefix } from './benchPrefix.ts';
import { postRuns, type PostTarget } from './postRuns.ts';
import { startSystem, type RunningSystem } from './startSystem.ts';
import { round } from './stats.ts';
import { telegramBody } from './telegramBody.ts';

const REDIS_URL = 'redis://127.0.0.1:6379';
const DATABASE = 'awooop_bench_isolation';
const PROMPT = Buffer.from('You are the bench agent. Answer briefly.\n');
const CALM = 'calm';
const STUCK = 'stuck';
const WELL = 'well';

const { values: args } = parseArgs({
  options: {
    runs: { type: 'string', default: '150' },
    rate: { type: 'string', default: '10' },
    'a-rate': { type: 'string', default: '10' },
    concurrency: { type: 'string', default: '16' },
    compare: { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
  },
});
const positive = (name: string, v: string | undefined) => {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) {
    process.stderr.write(`bench:isolation: --${name} must be a positive number, not ${v}\n`);
    process.exit(2);
  }
  return n;
};
const RUNS = Math.floor(positive('runs', args.runs));
const RATE = positive('rate', args.rate);
const A_RATE = positive('a-rate', args['a-rate']);
const CONCURRENCY = Math.floor(positive('concurrency', args.concurrency));

/** A's outside services: its MCP server's endpoint and its Bot API root. */
type Peers = { mcpUrl: string; apiRoot: string };

/** The tenants: B answers on the API channel with no tools; A has a tool and Telegram. */
function tenantFile(projectId: string, peers: Peers | null): TenantFile {
  return TenantFile.parse({
    apiVersion: 'awooop/v1',
    project: {
      id: projectId,
      displayName: projectId,
      acl: { members: [{ subject: 'email:bench@example.test', roles: ['admin'] }] },
      defaultAgent: 'helper',
    },
    agents: {
      helper: {
        description: 'Bench agent',
        capabilityVersion: '1.0.0',
        prompt: { ref: 'prompts/agent.md', sha256: sha256Hex(PROMPT) },
        contextDomain: 'general',
        safetyCeiling: 'read',
        ...(peers ? { tools: ['ops.lookup'] } : {}),
      },
    },
    mcpGateway: peers
      ? {
          servers: [
            {
              name: 'ops',
              contextDomain: 'general',
              environment: 'prod',
              transport: { type: 'streamable_http', url: peers.mcpUrl, sseFallback: false },
              tools: [{ name: 'lookup', risk: 'read', timeoutMs: 5000 }],
            },
          ],
          grants: [{ agent: 'helper', tools: ['ops.lookup'], environments: ['prod'] }],
        }
      : { servers: [], grants: [] },
    policies: {
      default: {
        modelRoute: { primary: { provider: 'echo' }, fallbacks: [] },
        rate: { perPeerPerMinute: 1_000_000, perProjectPerMinute: 100_000_000 },
      },
    },
    runtime: {
      flows: [{ name: 'default', mode: 'read_only' }],
      timeouts: { runMs: 600_000, toolMs: 5000 },
    },
    channels: {
      api: { type: 'api' },
      ...(peers
        ? {
            tg: {
              type: 'telegram',
              botToken: 'secret:tg-token',
              webhookSecret: 'secret:tg-webhook',
              apiRoot: peers.apiRoot,
              parseMode: 'HTML',
            },
          }
        : {}),
    },
  });
}

/** An HTTP peer that takes every request and never answers: A's MCP server and Bot API. */
async function startHungPeer() {
  const held: ServerResponse[] = [];
  let requests = 0;
  const byKind = new Map<string, number>();
  const server = createServer((req, res) => {
    requests += 1;
    // `/mcp`, or the Bot API method (`/bot<token>/sendMessage` → sendMessage)
    const kind = req.url?.startsWith('/mcp') ? 'mcp' : (req.url?.split('/').pop() ?? '?');
    byKind.set(kind, (byKind.get(kind) ?? 0) + 1);
    held.push(res);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests: () => requests,
    byKind: () => [...byKind].map(([k, n]) => `${k} ${n}`).join(', '),
    async close() {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}

/**
 * A healthy MCP server: Streamable HTTP, stateless (a server and transport per request, as the
 * SDK's stateless example does), with the one tool A is granted, answering at once.
 */
async function startHealthyMcp() {
  let calls = 0;
  const server = createServer((req, res) => {
    const mcp = new McpServer({ name: 'bench-ops', version: '1.0.0' });
    mcp.registerTool(
      'lookup',
      { description: 'Looks a key up', inputSchema: { key: z.string().optional() } },
      () => {
        calls += 1;
        return { content: [{ type: 'text', text: 'found' }] };
      },
    );
    const transport = new StreamableHTTPServerTransport({ enableJsonResponse: true });
    res.on('close', () => void transport.close().then(() => mcp.close()));
    void mcp
      .connect(transport)
      .then(() => transport.handleRequest(req, res))
      .catch(() => res.writeHead(500).end());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/mcp`,
    calls: () => calls,
    async close() {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}

type Figures = {
  round: string;
  runs: number;
  unfinished: number;
  p50Ms: number;
  p99Ms: number;
  aAccepted: number;
  aFinished: number;
};

async function measure(db: pg.Client, projectId: string, mark: number) {
  const { rows } = await db.query<{ n: string; open: string; q: number[] | null }>(
    `SELECT count(*) FILTER (WHERE completed_at IS NOT NULL) AS n,
            count(*) FILTER (WHERE completed_at IS NULL) AS open,
            percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP
              (ORDER BY extract(epoch FROM completed_at - created_at) * 1000)
              FILTER (WHERE completed_at IS NOT NULL) AS q
       FROM runs WHERE project_id = $1 AND run_seq > $2`,
    [projectId, mark],
  );
  const row = rows[0]!;
  return {
    runs: Number(row.n),
    unfinished: Number(row.open),
    p50Ms: row.q?.[0] ?? Number.NaN,
    p99Ms: row.q?.[1] ?? Number.NaN,
  };
}

async function mark(db: pg.Client): Promise<number> {
  const { rows } = await db.query<{ m: string }>('SELECT coalesce(max(run_seq), 0) AS m FROM runs');
  return Number(rows[0]!.m);
}

async function main(): Promise<void> {
  const log = (line: string) => process.stderr.write(`${line}\n`);
  const prefix = benchPrefix('awiso');
  const redis = new Redis(REDIS_URL, { lazyConnect: true });
  const peer = await startHungPeer();
  const mcp = await startHealthyMcp();
  const bot = await startTelegramServer();
  let db: pg.Client | undefined;
  let running: RunningSystem | undefined;
  const cleanup = async () => {
    await running?.stop().catch(() => {});
    await db?.end().catch(() => {});
    await peer.close().catch(() => {});
    await mcp.close().catch(() => {});
    await bot.close().catch(() => {});
    log(`deleted ${await deleteRedisPrefix(redis, prefix).catch(() => 0)} Redis keys`);
    redis.disconnect();
    if (!args.keep) await dropBenchDatabase(DATABASE).catch(() => {});
  };
  try {
    await redis.connect();
    const url = await createBenchDatabase(DATABASE);
    const secretKey = randomBytes(32);
    const webhookSecret = `bench-webhook-${randomBytes(12).toString('hex')}`;
    const pool = await createDbPool(url, { applicationName: 'awooop-bench', maxPoolSize: 2 });
    const keys: Record<string, string> = {};
    try {
      for (const [projectId, peers] of [
        [CALM, null],
        [STUCK, { mcpUrl: `${peer.url}/mcp`, apiRoot: peer.url }],
        [WELL, { mcpUrl: mcp.url, apiRoot: bot.apiRoot }],
      ] as const) {
        await applyTenant(
          { pool, logger: pino({ level: 'silent' }) },
          {
            tenant: tenantFile(projectId, peers),
            artifacts: [
              {
                ref: 'prompts/agent.md',
                kind: 'prompt',
                mediaType: 'text/markdown',
                content: PROMPT,
              },
            ],
            actor: 'bench',
          },
        );
        keys[projectId] = await withProject(pool, projectId, async (tx) => {
          const secrets = {
            'tg-token': '123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw1',
            'tg-webhook': webhookSecret,
          };
          for (const [name, value] of Object.entries(secrets))
            await putSecret(tx, {
              projectId,
              name,
              sealed: sealSecret(secretKey, value, secretAad(projectId, name)),
              actor: 'bench',
            });
          return (
            await createApiKey(tx, { projectId, name: 'bench', roles: ['client'], actor: 'bench' })
          ).key;
        });
      }
    } finally {
      await pool.end();
    }
    db = new pg.Client({ connectionString: url, application_name: 'awooop-bench' });
    await db.connect();

    const calmTarget = (port: number, tag: string): PostTarget => ({
      port,
      path: `/v1/projects/${CALM}/messages`,
      headers: { authorization: `Bearer ${keys[CALM]}` },
      body: (i) => JSON.stringify({ text: `hello ${i}`, conversation_id: `c-${tag}-${i}` }),
    });
    let nextUpdate = 1;
    const aTarget = (port: number, projectId: string): PostTarget => ({
      port,
      path: `/webhooks/telegram/${projectId}/tg`,
      headers: { 'x-telegram-bot-api-secret-token': webhookSecret },
      body: () => telegramBody(nextUpdate++),
    });

    const start = async (slots: { project: number; dependency: number } | null) => {
      const port = await freePort();
      running = await startSystem({
        kind: 'pipeline',
        layout: 'one',
        port,
        env: {
          DATABASE_URL: url,
          REDIS_URL,
          AWOOOP_REDIS_PREFIX: prefix,
          AWOOOP_SECRET_KEY: secretKey.toString('hex'),
          AWOOOP_WORKER_CONCURRENCY: String(CONCURRENCY),
          LOG_LEVEL: 'info',
          NODE_ENV: 'production',
          ...(slots
            ? {
                AWOOOP_BULKHEAD_PROJECT_SLOTS: String(slots.project),
                AWOOOP_BULKHEAD_DEPENDENCY_SLOTS: String(slots.dependency),
              }
            : {}),
        },
      });
      return port;
    };

    /** A round: B's runs, and A's at the same time when `a` names A's project. */
    const roundOf = async (name: string, port: number, a: string | null): Promise<Figures> => {
      const from = await mark(db!);
      log(`${name}: B ${RUNS} runs at ${RATE}/s${a ? `, A at ${A_RATE}/s` : ''}`);
      const durationS = RUNS / RATE;
      const [calm, stuck] = await Promise.all([
        postRuns(calmTarget(port, name), { count: RUNS, connections: 32, rate: RATE }),
        a
          ? postRuns(aTarget(port, a), {
              count: Math.ceil(durationS * A_RATE),
              connections: 32,
              rate: A_RATE,
            })
          : Promise.resolve(null),
      ]);
      // B's runs finish, or the round gives up on them after two minutes past the last post.
      const until = Date.now() + 120_000;
      let figures = await measure(db!, CALM, from);
      while (figures.unfinished > 0 && Date.now() < until) {
        await new Promise((r) => setTimeout(r, 250));
        figures = await measure(db!, CALM, from);
      }
      const aFigures = a ? await measure(db!, a, from) : null;
      if (calm.refused > 0) log(`  B refused: ${JSON.stringify(calm.refusals)}`);
      log(`  B p50 ${round(figures.p50Ms)} ms, p99 ${round(figures.p99Ms)} ms`);
      return {
        round: name,
        ...figures,
        aAccepted: stuck?.accepted ?? 0,
        aFinished: aFigures?.runs ?? 0,
      };
    };

    const results: Figures[] = [];
    let port = await start(null);
    // Warm-up (not reported): the first runs pay for connections, caches and JIT.
    await roundOf('warm-up', port, null);
    results.push(await roundOf('B alone', port, null));
    // A's plain load: as many runs through a healthy MCP server and Bot API, what B pays
    // for sharing the process at all (its first round warms A's paths up).
    await roundOf('warm-up with A healthy', port, WELL);
    results.push(await roundOf('B while A is healthy', port, WELL));
    // A's paths warm up too (not reported): the first Telegram send and the first MCP connect
    // of the process load and compile code no B run uses, all at once when the first connects
    // time out. A keeps hanging into the measured round, its backlog with it.
    await roundOf('warm-up with A hung', port, STUCK);
    results.push(await roundOf('B while A hangs', port, STUCK));
    if (args.compare) {
      await running!.stop();
      running = undefined;
      port = await start({ project: 10_000, dependency: 10_000 });
      await roundOf('warm-up', port, null);
      await roundOf('warm-up with A hung', port, STUCK);
      results.push(await roundOf('B while A hangs, shares off', port, STUCK));
    }
    const alone = results[0]!;
    const lines = results.map((r) => {
      const ratio = (v: number, base: number) => (base > 0 ? round(v / base, 2) : Number.NaN);
      return (
        `${r.round.padEnd(28)} B runs ${r.runs}` +
        (r.unfinished > 0 ? ` (+${r.unfinished} unfinished)` : '') +
        `  p50 ${round(r.p50Ms)} ms  p99 ${round(r.p99Ms)} ms` +
        `  ×alone p50 ${ratio(r.p50Ms, alone.p50Ms)} p99 ${ratio(r.p99Ms, alone.p99Ms)}` +
        (r.aAccepted > 0 ? `  A accepted ${r.aAccepted}, finished ${r.aFinished}` : '')
      );
    });
    lines.push(`A's hung peer received ${peer.requests()} requests (${peer.byKind()})`);
    lines.push(`A's healthy peers: ${bot.sent.length} messages sent, ${mcp.calls()} tool calls`);
    if (args.json) process.stdout.write(`${JSON.stringify(results)}\n`);
    else process.stdout.write(`${lines.join('\n')}\n`);
  } finally {
    await cleanup();
  }
}

await main();
