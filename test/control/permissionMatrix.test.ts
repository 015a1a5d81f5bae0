import { randomUUID } from 'node:crypto';
import type Router from '@koa/router';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey } from '../../db/apiKeys.ts';
import { withProject } from '../../db/withProject.ts';
import { ROLES, type Role } from '../../pipeline/contracts/roles.ts';
import {
  can,
  COMMAND_GATES,
  rolesFor,
  ROUTE_GATES,
  type Gate,
} from '../../pipeline/control/permissions.ts';
import { AppError } from '../../pipeline/errors.ts';
import { authorizeCommand } from '../../ops/cli/authorizeCommand.ts';
import type { CliContext } from '../../ops/cli/CliContext.ts';
import type { Config } from '../../ops/loadConfig.ts';
import { startTelegramServer } from '../../ops/fakes/telegramServer.ts';
import { setUpTestTenant } from '../../ops/fakes/pipelineTenant.ts';
import { startLineServer } from '../fakes/lineServer.ts';
import { runCli } from '../helpers/runCli.ts';
import { startPipeline, type Pipeline } from '../helpers/startPipeline.ts';
import { useTestDatabase } from '../helpers/testDatabase.ts';
import { TEST_REDIS_URL, useRedisPrefix } from '../helpers/useRedisPrefix.ts';

// The permission matrix: every HTTP route and every CLI command, driven with a key of every
// role, is let in or refused exactly as the table in pipeline/control/permissions.ts says.
const db = useTestDatabase();
const prefix = useRedisPrefix();
const PROJECT = 'matrix';
const ADMIN_TOKEN = 'matrix-admin-token-'.padEnd(32, 'a');

let telegram: Awaited<ReturnType<typeof startTelegramServer>>;
let line: Awaited<ReturnType<typeof startLineServer>>;
let pipeline: Pipeline;
const keys = {} as Record<Role, string>;
/** A run the client key sent: readable by it and by every role that reads any run. */
let clientRun: string;

const awooop = (...args: string[]) =>
  runCli(args, { DATABASE_URL: db().url, REDIS_URL: TEST_REDIS_URL, AWOOOP_REDIS_PREFIX: prefix });

beforeAll(async () => {
  telegram = await startTelegramServer();
  line = await startLineServer();
  pipeline = await startPipeline({
    pool: db().pool,
    prefix,
    workers: false,
    app: { adminToken: ADMIN_TOKEN, metrics: async () => '' },
  });
  await setUpTestTenant(pipeline, db().pool, {
    projectId: PROJECT,
    telegramApiRoot: telegram.apiRoot,
    lineBaseUrl: line.baseUrl,
  });
  for (const role of ROLES) {
    const created = await withProject(db().pool, PROJECT, (tx) =>
      createApiKey(tx, {
        projectId: PROJECT,
        name: role,
        roles: [role],
        actor: 'test',
        ...(role === 'mcp' ? { agent: 'helper' } : {}),
      }),
    );
    keys[role] = created.key;
  }
  const sent = await fetch(`${pipeline.url}/v1/projects/${PROJECT}/messages`, {
    method: 'POST',
    headers: { authorization: `Bearer ${keys.client}`, 'content-type': 'application/json' },
    body: JSON.stringify({ text: 'hello' }),
  });
  expect(sent.status).toBe(202);
  clientRun = ((await sent.json()) as { run_id: string }).run_id;
});

afterAll(async () => {
  await pipeline?.close();
  await Promise.all([telegram?.close(), line?.close()]);
});

/** `METHOD /path` of every route the app's routers hold, as the table names them. */
function appRoutes(): string[] {
  const found = new Set<string>();
  for (const mw of pipeline.middleware) {
    const router = (mw as { router?: Router }).router;
    if (!router) continue;
    for (const layer of router.stack) {
      const methods = layer.methods.filter((m) => m !== 'HEAD');
      if (methods.length === 0) continue; // router.use middleware, not a route
      const path = String(layer.path)
        .replace(/(.)\/$/, '$1')
        .replace(/^\/webhooks\/[a-z]+\//, '/webhooks/:channel/');
      // A route taking every method (`router.all`, the MCP endpoint) is listed as its POST.
      for (const m of methods.length > 4 ? ['POST'] : methods) found.add(`${m} ${path}`);
    }
  }
  return [...found].sort();
}

/** The concrete request for a route pattern; bodies that pass auth but change nothing. */
function requestFor(route: string): { method: string; path: string; body?: string } {
  const [method, pattern] = route.split(' ') as [string, string];
  const path = String(pattern)
    .replace(':projectId', PROJECT)
    .replace(':runId', clientRun)
    .replace(':approvalId', randomUUID())
    .replace(':channel', 'telegram')
    .replace(/channels\/:accountId/, 'channels/nosuch')
    .replace(':accountId', 'tg')
    .replace(':agent', 'helper');
  if (method !== 'POST') return { method, path };
  if (route.endsWith('/messages')) return { method, path, body: '{}' }; // 400: changes nothing
  if (route.endsWith('/mcp'))
    return {
      method,
      path,
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list', params: {} }),
    };
  return { method, path, body: '' };
}

type Outcome = { status: number; code?: string; message?: string };

async function callAs(role: Role, route: string): Promise<Outcome> {
  const { method, path, body } = requestFor(route);
  const controller = new AbortController();
  const res = await fetch(`${pipeline.url}${path}`, {
    method,
    signal: controller.signal,
    headers: {
      authorization: `Bearer ${keys[role]}`,
      accept: 'application/json, text/event-stream',
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(body === undefined ? {} : { body }),
  });
  if ((res.headers.get('content-type') ?? '').startsWith('text/event-stream')) {
    controller.abort(); // a run's event stream: its status is the answer
    return { status: res.status };
  }
  const text = await res.text();
  let error: { code?: string; message?: string } | undefined;
  try {
    error = (JSON.parse(text) as { error?: typeof error }).error;
  } catch {
    error = undefined;
  }
  return { status: res.status, ...error };
}

/** What the table says a key of `role` gets on a route or command gated by `gate`. */
function expected(gate: Gate, role: Role): 'allowed' | 'refused' {
  if (gate === 'open') return 'allowed';
  if (gate === 'platform' || gate === 'channel' || gate === 'token') return 'refused';
  return can([role], gate) ? 'allowed' : 'refused';
}

describe('every HTTP route × every role', () => {
  it('has a line in the route table for every route of the app, and none for a route that is gone', () => {
    const routes = appRoutes();
    expect(routes.length).toBeGreaterThan(10);
    const missing = routes.filter((r) => ROUTE_GATES[r] === undefined);
    expect(missing, 'routes without a line in ROUTE_GATES').toEqual([]);
    // bull-board is middleware in front of the routers, not a router's route
    const stale = Object.keys(ROUTE_GATES).filter(
      (r) => !routes.includes(r) && r !== 'GET /admin/queues',
    );
    expect(stale, 'ROUTE_GATES lines naming no route').toEqual([]);
  });

  it('lets in or refuses each key as the table says (403 FORBIDDEN naming the roles needed)', async () => {
    const rows: string[] = [];
    for (const route of [...appRoutes(), 'GET /admin/queues']) {
      const gate = ROUTE_GATES[route]!;
      for (const role of ROLES) {
        const got = await callAs(role, route);
        const want = expected(gate, role);
        const refusedByRole = got.status === 403 && got.code === 'FORBIDDEN';
        const outcome = got.status === 401 || refusedByRole ? 'refused' : 'allowed';
        rows.push(`${route} × ${role}: ${outcome} (${got.status} ${got.code ?? ''})`);
        expect(outcome, `${route} as ${role}: ${got.status} ${got.code} ${got.message}`).toBe(want);
        if (want === 'refused') {
          if (gate === 'channel' || gate === 'token' || gate === 'platform' || gate === 'open') {
            expect(got.status, `${route} as ${role}`).toBe(401);
          } else {
            expect(refusedByRole, `${route} as ${role}`).toBe(true);
            // the MCP endpoint's own refusal names the mcp key; the API's names the roles
            if (gate !== 'mcp.use')
              expect(got.message).toContain(`it needs the ${rolesFor(gate).join(' or ')} role`);
          }
        }
      }
    }
    // a client reads its own run; an approver key is no reader of runs
    expect(rows).toContain('GET /v1/projects/:projectId/runs/:runId × client: allowed (200 )');
    expect(rows).toContain(
      'GET /v1/projects/:projectId/runs/:runId × approver: refused (403 FORBIDDEN)',
    );
  });
});

describe('every CLI command × every role', () => {
  /** Commands and subcommands as `awooop help` lists them. */
  let commands: string[];

  beforeAll(async () => {
    const help = await awooop('help');
    expect(help.code).toBe(0);
    commands = [];
    for (const line of help.stdout.split('\n')) {
      // `  NAME` or `  NAME SUB|SUB|…` at two spaces in: a command line of the list
      const match = /^ {2}([a-z]+)(?: ([a-z]+(?:\|[a-z]+)+))?(?: |$)/.exec(line);
      if (!match) continue;
      const subs = match[2]?.split('|') ?? [];
      if (subs.length === 0) commands.push(match[1]!);
      else for (const sub of subs) commands.push(`${match[1]} ${sub}`);
    }
  });

  const cliContext = (): CliContext => ({
    config: {} as Config,
    logger: pipeline.ctx.logger,
    actor: 'cli:test',
    caller: { kind: 'platform' },
    print: () => {},
    connect: async () => ({ pool: db().platformPool, logger: pipeline.ctx.logger }),
    close: async () => {},
  });

  it('has a line in the command table for every command the CLI lists, and none for a command that is gone', () => {
    expect(commands).toContain('approvals approve');
    expect(commands).toContain('channels');
    expect(commands).toContain('usage');
    expect(commands.filter((c) => COMMAND_GATES[c] === undefined)).toEqual([]);
    expect(Object.keys(COMMAND_GATES).filter((c) => !commands.includes(c))).toEqual([]);
  });

  it('lets in or refuses each key as the table says, naming the roles needed; the platform operator runs everything', async () => {
    for (const command of commands) {
      const [name, sub] = command.split(' ') as [string, string | undefined];
      const args = [...(sub ? [sub] : []), '--project', PROJECT];
      const gate = COMMAND_GATES[command]!;
      const asOperator = await authorizeCommand(cliContext(), name, args, undefined);
      expect(asOperator.caller, command).toEqual({ kind: 'platform' });
      for (const role of ROLES) {
        const got = await authorizeCommand(cliContext(), name, args, keys[role]).then(
          (ctx) => ctx,
          (error: unknown) => error,
        );
        const want = expected(gate, role);
        if (want === 'allowed') {
          expect(got, `${command} as ${role}`).not.toBeInstanceOf(Error);
          if (gate !== 'open')
            expect((got as CliContext).actor, command).toMatch(/^api:[0-9a-f-]{36}$/);
        } else {
          expect(got, `${command} as ${role}`).toBeInstanceOf(AppError);
          expect((got as AppError).code, `${command} as ${role}`).toBe('FORBIDDEN');
          expect((got as AppError).message).toContain(
            gate === 'platform' || gate === 'channel' || gate === 'token' || gate === 'open'
              ? 'is a platform command'
              : `it needs the ${rolesFor(gate).join(' or ')} role`,
          );
        }
      }
    }
  });

  it("refuses a key on another project's command line, and a key that is no live key", async () => {
    const other = await authorizeCommand(
      cliContext(),
      'runs',
      ['list', '--project', 'other'],
      keys.admin,
    ).catch((e: unknown) => e);
    expect((other as AppError).code).toBe('FORBIDDEN');
    expect((other as AppError).message).toContain(`this key is of project ${PROJECT}`);
    const bogus = await authorizeCommand(
      cliContext(),
      'runs',
      ['list', '--project', PROJECT],
      `awk_${PROJECT}_${'x'.repeat(43)}`,
    ).catch((e: unknown) => e);
    expect((bogus as AppError).code).toBe('UNAUTHORIZED');
  });

  it('refuses through the real CLI: a viewer key making keys (exit 1, naming admin), an unknown role by name (exit 2)', async () => {
    const viewer = await awooop('--key', keys.viewer, 'keys', 'create', '--project', PROJECT);
    expect(viewer.code).toBe(1);
    expect(viewer.stderr).toContain(
      'FORBIDDEN: this key (viewer) may not keys.manage: it needs the admin role',
    );
    const unknown = await awooop('keys', 'create', '--project', PROJECT, '--role', 'approvr');
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain(
      '--role: "approvr" is not one of client, viewer, operator, approver, admin, mcp',
    );
    const made = await awooop(
      ...['keys', 'create', '--project', PROJECT, '--role', 'viewer', '--role', 'approver'],
    );
    expect(made.stderr).toContain('(viewer, approver)');
    expect(made.code).toBe(0);
  });
});
