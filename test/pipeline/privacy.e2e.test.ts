// Regression (issue 15, item 5): PII was redacted only in the output, so an e-mail address or
// a phone number in a message went to whatever model the route named;
// `privacy.storeTranscripts: false` was refused as unsupported and every message stayed in
// Postgres forever. Here the input is classified before each model call (the fake model
// servers' request logs show what reached each provider), a policy without transcripts leaves
// no message text in any table once its run has ended, and the retention pass blanks expired
// text, audited, with the audit chain intact.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { telegramUpdate } from '../../ops/fakes/channelPayloads.ts';
import { applyTestTenant, pipelineTenant, TEST_SECRETS } from '../../ops/fakes/pipelineTenant.ts';
import { startTelegramServer } from '../../ops/fakes/telegramServer.ts';
import { verifyAudit } from '../../db/auditEvents.ts';
import { withProject } from '../../db/withProject.ts';
import { TenantFile } from '../../pipeline/contracts/tenantFile.ts';
import { applyRetention } from '../../pipeline/sweeper/applyRetention.ts';
import { decideApproval } from '../../pipeline/approvals/decideApproval.ts';
import { retryRun } from '../../pipeline/runs/retryRun.ts';
import { startMcpHttpServer, type McpHttpServer } from '../fakes/mcpHttpServer.ts';
import { startModelServer, type ModelServer } from '../fakes/modelServer.ts';
import { startPipeline, type Pipeline } from '../helpers/startPipeline.ts';
import { useTestDatabase } from '../helpers/testDatabase.ts';
import { useRedisPrefix } from '../helpers/useRedisPrefix.ts';
import { waitFor } from '../helpers/waitFor.ts';

const db = useTestDatabase();
const prefix = useRedisPrefix();
const NOTICE = 'Sorry, I could not finish that. The team has been told.';
const MCP_TOKEN = 'privacy-http-mcp-token-7e2a91c4';
/** The Telegram user id of the approver of the approval tenant. */
const APPROVER = 880_077;

let telegram: Awaited<ReturnType<typeof startTelegramServer>>;
/** A provider that may see no personal data. */
let publicModel: ModelServer;
/** A provider the policy lets see e-mail addresses and phone numbers. */
let privateModel: ModelServer;
let mcp: McpHttpServer;
let pipeline: Pipeline;
let nextUpdateId = 1;
let nextChat = 90_000;

beforeAll(async () => {
  telegram = await startTelegramServer();
  publicModel = await startModelServer();
  privateModel = await startModelServer();
  mcp = await startMcpHttpServer({ token: MCP_TOKEN });
  pipeline = await startPipeline({ pool: db().pool, sweeperPool: db().sweeperPool, prefix });
});

afterAll(async () => {
  await pipeline?.close();
  await Promise.all([telegram?.close(), publicModel?.close(), privateModel?.close(), mcp?.close()]);
});

type Privacy = {
  piiClasses?: string[];
  retentionDays?: number;
  piiAccess?: { model: string; classes: string[] }[];
  storeTranscripts?: boolean;
  /** The route: `public` (primary) then `private`, or only one of them. */
  route?: 'public-then-private' | 'public' | 'private';
  /** Give the agent the fake MCP server's read tool `web.lookup`. */
  tools?: boolean;
  /**
   * Also its write tool `web.restart`, granted only with an approval, in auto_remediate mode
   * with write tools on; `APPROVER` decides.
   */
  approval?: boolean;
};

/** Applies a test tenant whose route is the two fake providers, with the given privacy. */
async function applyPrivacyTenant(projectId: string, p: Privacy) {
  const base = pipelineTenant({
    projectId,
    telegramApiRoot: telegram.apiRoot,
    lineBaseUrl: telegram.apiRoot,
    ...(p.approval ? { mode: 'auto_remediate' as const, approvers: [String(APPROVER)] } : {}),
  });
  const tools = p.tools === true || p.approval === true;
  const target = (which: 'public' | 'private') => ({
    provider: 'openai_compatible',
    model: `${which}-model`,
    baseUrl: which === 'public' ? publicModel.url : privateModel.url,
    apiKey: 'secret:model-key',
  });
  const route = p.route ?? 'public-then-private';
  const policy = base.tenant.policies.default!;
  const boundary = {
    ...(p.piiClasses ? { piiClasses: p.piiClasses } : {}),
    ...(p.retentionDays ? { retentionDays: p.retentionDays } : {}),
  };
  const tenant = TenantFile.parse({
    ...base.tenant,
    project: {
      ...base.tenant.project,
      ...(Object.keys(boundary).length > 0 ? { dataBoundary: boundary } : {}),
    },
    ...(tools
      ? {
          agents: {
            helper: {
              ...base.tenant.agents.helper,
              maxSteps: 4,
              safetyCeiling: p.approval ? 'write' : 'read',
              tools: p.approval ? ['web.lookup', 'web.restart'] : ['web.lookup'],
            },
          },
          mcpGateway: {
            servers: [
              {
                name: 'web',
                contextDomain: 'general',
                environment: 'prod',
                transport: {
                  type: 'streamable_http',
                  url: mcp.url,
                  headers: { Authorization: 'secret:mcp-http' },
                },
                tools: [
                  { name: 'lookup', risk: 'read' },
                  ...(p.approval ? [{ name: 'restart', risk: 'write' }] : []),
                ],
              },
            ],
            grants: [
              { agent: 'helper', tools: ['web.lookup'], environments: ['prod'] },
              ...(p.approval
                ? [
                    {
                      agent: 'helper',
                      tools: ['web.restart'],
                      environments: ['prod'],
                      requireApproval: true,
                    },
                  ]
                : []),
            ],
          },
          ...(p.approval
            ? { runtime: { ...base.tenant.runtime, features: { writeTools: true } } }
            : {}),
        }
      : {}),
    policies: {
      default: {
        ...policy,
        modelRoute: {
          primary: target(route === 'private' ? 'private' : 'public'),
          fallbacks: route === 'public-then-private' ? [target('private')] : [],
        },
        privacy: {
          ...policy.privacy,
          ...(p.piiAccess ? { piiAccess: p.piiAccess } : {}),
          ...(p.storeTranscripts !== undefined ? { storeTranscripts: p.storeTranscripts } : {}),
        },
      },
    },
  });
  await applyTestTenant(
    { pool: db().pool, logger: pipeline.ctx.logger },
    { tenant, artifacts: base.artifacts },
  );
  for (const [name, value] of Object.entries(TEST_SECRETS))
    await pipeline.setSecret(projectId, name, value);
  if (tools) await pipeline.setSecret(projectId, 'mcp-http', `Bearer ${MCP_TOKEN}`);
}

/** Sends `text` on the tenant's Telegram account from a new chat; returns the chat id. */
async function post(projectId: string, text: string): Promise<number> {
  const chatId = nextChat++;
  const res = await fetch(`${pipeline.url}/webhooks/telegram/${projectId}/tg`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'x-telegram-bot-api-secret-token': TEST_SECRETS['tg-webhook'],
    },
    body: JSON.stringify(telegramUpdate({ updateId: nextUpdateId++, chatId, text })),
  });
  expect(res.status).toBe(200);
  return chatId;
}

/** The run of the newest message from `chatId`, once it has ended. */
async function finished(projectId: string, chatId: number) {
  const owner = await db().owner();
  return waitFor(
    async () => {
      const { rows } = await owner.query<{
        run_id: string;
        state: string;
        failure_code: string | null;
        failure_detail: Record<string, unknown> | null;
      }>(
        `SELECT run_id, state, failure_code, failure_detail FROM runs
          WHERE project_id = $1 AND conversation_key LIKE '%' || $2 || '%'
          ORDER BY created_at DESC LIMIT 1`,
        [projectId, String(chatId)],
      );
      const run = rows[0];
      return run && ['COMPLETED', 'FAILED'].includes(run.state) ? run : undefined;
    },
    { what: `the run of chat ${chatId}`, timeoutMs: 120_000 },
  );
}

/** How many requests a provider received whose messages mention `needle`. */
const requestsWith = (model: ModelServer, needle: string) =>
  model.requests.filter((r) => r.rawBody.includes(needle)).length;

const sentTo = (chatId: number) =>
  telegram.sent.filter((m) => String(m.chat_id) === String(chatId)).map((m) => m.text);

/** Every table (and how many rows of it) whose rows, as text, contain `needle`. */
async function tablesHolding(needle: string): Promise<Record<string, number>> {
  const owner = await db().owner();
  const { rows: tables } = await owner.query<{ name: string }>(
    `SELECT quote_ident(table_name) AS name FROM information_schema.tables
      WHERE table_schema = 'public' AND table_type = 'BASE TABLE'`,
  );
  const found: Record<string, number> = {};
  for (const { name } of tables) {
    const { rows } = await owner.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM ${name} t WHERE strpos(t::text, $1) > 0`,
      [needle],
    );
    if (rows[0]!.n > 0) found[name] = rows[0]!.n;
  }
  return found;
}

async function transitionDetail(runId: string, to: string) {
  const owner = await db().owner();
  const { rows } = await owner.query<{ detail: Record<string, unknown> }>(
    `SELECT detail FROM run_transitions WHERE run_id = $1 AND to_state = $2`,
    [runId, to],
  );
  return rows[0]?.detail;
}

describe('privacy gates before the model call', () => {
  const access = [{ model: 'private-model', classes: ['email', 'phone'] }];

  it('routes a message carrying an e-mail address past the provider that may not see it', async () => {
    await applyPrivacyTenant('routed', { piiClasses: ['email', 'phone'], piiAccess: access });
    const chat = await post('routed', 'please write to jane.doe@example.org about my order');
    const run = await finished('routed', chat);
    expect(run.state).toBe('COMPLETED');
    expect(requestsWith(publicModel, 'jane.doe@example.org')).toBe(0);
    expect(requestsWith(privateModel, 'jane.doe@example.org')).toBe(1);
    // The decision is on the run's timeline by class and target name, never the address.
    const detail = await transitionDetail(run.run_id, 'EXECUTED');
    expect(detail).toMatchObject({
      model: 'private-model',
      pii_classes: ['email'],
      pii_skipped: ['openai_compatible:public-model'],
    });
    expect(JSON.stringify(detail)).not.toContain('jane.doe');
  });

  it('sends a message without personal data to the primary as before', async () => {
    const before = privateModel.requests.length;
    const chat = await post('routed', 'what are your opening hours');
    const run = await finished('routed', chat);
    expect(run.state).toBe('COMPLETED');
    expect(requestsWith(publicModel, 'what are your opening hours')).toBe(1);
    expect(privateModel.requests.length).toBe(before);
    expect(await transitionDetail(run.run_id, 'EXECUTED')).not.toHaveProperty('pii_classes');
  });

  it('refuses with PRIVACY_BLOCKED, sending nothing, when no model of the route may see a class', async () => {
    await applyPrivacyTenant('refused', {
      piiClasses: ['email', 'phone'],
      piiAccess: [{ model: 'private-model', classes: ['email'] }],
    });
    const chat = await post('refused', 'call me back on +44 20 7946 0958 today');
    const run = await finished('refused', chat);
    expect(run.state).toBe('FAILED');
    expect(run.failure_code).toBe('PRIVACY_BLOCKED');
    expect(run.failure_detail).toMatchObject({ pii_classes: ['phone'] });
    expect(JSON.stringify(run.failure_detail)).not.toContain('7946');
    expect(requestsWith(publicModel, '7946 0958')).toBe(0);
    expect(requestsWith(privateModel, '7946 0958')).toBe(0);
    // The user gets the short notice every failure gets.
    await waitFor(() => (sentTo(chat).length > 0 ? true : undefined), {
      what: 'the failure notice',
      timeoutMs: 60_000,
    });
    expect(sentTo(chat)).toEqual([NOTICE]);
  });

  it('checks the conversation history too, not only the new message', async () => {
    await applyPrivacyTenant('history', {
      piiClasses: ['email'],
      piiAccess: [{ model: 'private-model', classes: ['email'] }],
    });
    const chat = nextChat++;
    const say = async (text: string) => {
      const res = await fetch(`${pipeline.url}/webhooks/telegram/history/tg`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'x-telegram-bot-api-secret-token': TEST_SECRETS['tg-webhook'],
        },
        body: JSON.stringify(telegramUpdate({ updateId: nextUpdateId++, chatId: chat, text })),
      });
      expect(res.status).toBe(200);
      return finished('history', chat);
    };
    expect((await say('my address is sam@example.net')).state).toBe('COMPLETED');
    const publicBefore = requestsWith(publicModel, 'sam@example.net');
    const second = await say('and what was that again');
    expect(second.state).toBe('COMPLETED');
    // The second message has no address itself; its history does, so it is routed as well.
    expect(requestsWith(publicModel, 'sam@example.net')).toBe(publicBefore);
    expect(requestsWith(publicModel, 'and what was that again')).toBe(0);
    expect(requestsWith(privateModel, 'and what was that again')).toBe(1);
  });
});

describe('privacy.storeTranscripts: false', () => {
  it('leaves no message text in any table once the run has completed', async () => {
    await applyPrivacyTenant('nostore', { storeTranscripts: false, route: 'public' });
    const marker = 'kumquat-nebula-transcript';
    const chat = await post('nostore', `tell me about ${marker} please`);
    const run = await finished('nostore', chat);
    expect(run.state).toBe('COMPLETED');
    // It was answered (the model saw the text, the user got the answer) ...
    expect(requestsWith(publicModel, marker)).toBe(1);
    expect(sentTo(chat).join('\n')).toContain(marker);
    // ... and nothing of it stays in Postgres.
    expect(await tablesHolding(marker)).toEqual({});
    const owner = await db().owner();
    const { rows } = await owner.query<{ removed: boolean }>(
      `SELECT text_removed_at IS NOT NULL AS removed FROM runs WHERE run_id = $1`,
      [run.run_id],
    );
    expect(rows[0]!.removed).toBe(true);
    expect(
      await withProject(db().pool, 'nostore', (tx) => verifyAudit(tx)).then((v) => v.problems),
    ).toEqual([]);
  });

  it('leaves none in checkpoints or tool calls either, when the model called a tool with it', async () => {
    await applyPrivacyTenant('nostore-tools', {
      storeTranscripts: false,
      route: 'public',
      tools: true,
    });
    const marker = 'kumquat-tool-argument';
    publicModel.setBehaviour((request) =>
      request.rawBody.includes(marker) && !request.body.messages.some((m) => m.role === 'tool')
        ? { toolCalls: [{ name: 'web__lookup', arguments: { key: marker } }] }
        : undefined,
    );
    try {
      const chat = await post('nostore-tools', `look up ${marker}`);
      const run = await finished('nostore-tools', chat);
      expect(run.state).toBe('COMPLETED');
      // The tool was called with it and its result went back to the model ...
      expect(mcp.calls.some((c) => c.arguments['key'] === marker)).toBe(true);
      expect(publicModel.requests.some((r) => r.body.messages.some((m) => m.role === 'tool'))).toBe(
        true,
      );
      // ... and neither the arguments, the result nor the steps keep it.
      expect(await tablesHolding(marker)).toEqual({});
      const owner = await db().owner();
      const { rows } = await owner.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM tool_calls WHERE run_id = $1`,
        [run.run_id],
      );
      expect(rows[0]!.n).toBe(1);
    } finally {
      publicModel.setBehaviour(null);
    }
  });

  it('keeps the text while a run waits for an approval, so it resumes, and removes it once it completes', async () => {
    await applyPrivacyTenant('nostore-approval', {
      storeTranscripts: false,
      route: 'public',
      approval: true,
    });
    const marker = 'kumquat-approved-service';
    publicModel.setBehaviour((request) =>
      request.rawBody.includes(marker) && !request.body.messages.some((m) => m.role === 'tool')
        ? { toolCalls: [{ name: 'web__restart', arguments: { service: marker } }] }
        : undefined,
    );
    try {
      const chat = await post('nostore-approval', `restart ${marker} please`);
      const owner = await db().owner();
      const approval = await waitFor(
        async () =>
          (
            await owner.query<{ approval_id: string }>(
              `SELECT approval_id FROM approvals WHERE project_id = 'nostore-approval'
                  AND status = 'pending'`,
            )
          ).rows[0],
        { what: 'the approval', timeoutMs: 120_000 },
      );
      // In flight, the text is what the resume is built from.
      expect(Object.keys(await tablesHolding(marker))).toEqual(
        expect.arrayContaining(['conversation_events', 'run_steps', 'approvals']),
      );
      await decideApproval(
        {
          pool: db().pool,
          enqueue: pipeline.queues.enqueue,
          contracts: pipeline.ctx.contracts,
          channels: pipeline.ctx.channels,
        },
        {
          projectId: 'nostore-approval',
          approvalId: approval.approval_id,
          decision: 'approved',
          decidedBy: `telegram:${APPROVER}`,
          via: 'api',
        },
      );
      const run = await finished('nostore-approval', chat);
      expect(run.state).toBe('COMPLETED');
      expect(mcp.calls.some((c) => c.tool === 'restart' && c.arguments['service'] === marker)).toBe(
        true,
      );
      expect(sentTo(chat).join('\n')).toContain(marker);
      expect(await tablesHolding(marker)).toEqual({});
    } finally {
      publicModel.setBehaviour(null);
    }
  });

  it('removes the text of a run that fails too', async () => {
    await applyPrivacyTenant('nostore-fail', {
      storeTranscripts: false,
      route: 'public',
      piiClasses: ['email'],
    });
    const chat = await post('nostore-fail', 'mail lee@example.com the kumquat-failure-note');
    const run = await finished('nostore-fail', chat);
    expect(run.failure_code).toBe('PRIVACY_BLOCKED');
    expect(await tablesHolding('kumquat-failure-note')).toEqual({});
    // With its text gone it cannot run again: a retry is refused, changing nothing.
    await expect(
      retryRun(
        {
          pool: db().pool,
          logger: pipeline.ctx.logger,
          actor: 'cli:test',
          enqueue: pipeline.queues.enqueue,
          clearJob: async () => 'removed',
        },
        { projectId: 'nostore-fail', runId: run.run_id },
      ),
    ).rejects.toMatchObject({ code: 'RUN_NOT_RETRYABLE' });
    expect((await finished('nostore-fail', chat)).state).toBe('FAILED');
  });

  it('keeps transcripts when the policy does not say false', async () => {
    await applyPrivacyTenant('kept', { route: 'public' });
    const chat = await post('kept', 'a kumquat-kept-transcript question');
    expect((await finished('kept', chat)).state).toBe('COMPLETED');
    expect(Object.keys(await tablesHolding('kumquat-kept-transcript'))).toEqual(
      expect.arrayContaining(['conversation_events', 'runs', 'run_steps', 'outbound_messages']),
    );
  });
});

describe('the retention pass', () => {
  it('blanks text older than retentionDays, keeps fresh text, audits counts, and is harmless twice', async () => {
    await applyPrivacyTenant('retained', { retentionDays: 1, route: 'public' });
    await applyPrivacyTenant('forever', { route: 'public' });
    const oldChat = await post('retained', 'an old kumquat-expired-words message');
    const old = await finished('retained', oldChat);
    const freshChat = await post('retained', 'a new kumquat-fresh-words message');
    await finished('retained', freshChat);
    const foreverChat = await post('forever', 'an old kumquat-forever-words message');
    const forever = await finished('forever', foreverChat);
    const owner = await db().owner();
    await owner.query(
      `UPDATE runs SET completed_at = now() - interval '2 days' WHERE run_id = ANY($1)`,
      [[old.run_id, forever.run_id]],
    );

    const sweeperCtx = { pool: db().sweeperPool, actor: 'sweeper' };
    const first = await applyRetention(sweeperCtx);
    expect(first).toEqual([
      {
        projectId: 'retained',
        days: 1,
        runs: 1,
        events: 1,
        steps: 1,
        toolCalls: 0,
        approvals: 0,
        outbound: 1,
      },
    ]);
    expect(await tablesHolding('kumquat-expired-words')).toEqual({});
    expect(Object.keys(await tablesHolding('kumquat-fresh-words'))).toEqual(
      expect.arrayContaining(['conversation_events', 'runs', 'outbound_messages']),
    );
    // A project without retentionDays keeps its text, however old.
    expect(Object.keys(await tablesHolding('kumquat-forever-words'))).toEqual(
      expect.arrayContaining(['conversation_events', 'runs', 'outbound_messages']),
    );

    const audits = async () =>
      (
        await owner.query<{ detail: Record<string, unknown> }>(
          `SELECT detail FROM audit_events WHERE project_id = 'retained'
              AND action = 'retention.applied'`,
        )
      ).rows;
    expect(await audits()).toEqual([
      {
        detail: {
          retention_days: 1,
          runs: 1,
          events: 1,
          steps: 1,
          tool_calls: 0,
          approvals: 0,
          outbound: 1,
        },
      },
    ]);

    expect(await applyRetention(sweeperCtx)).toEqual([]);
    expect(await audits()).toHaveLength(1);
    expect(
      await withProject(db().pool, 'retained', (tx) => verifyAudit(tx)).then((v) => v.problems),
    ).toEqual([]);
  });

  it('refuses any other change to an event or a checkpoint: they stay append-only', async () => {
    await applyPrivacyTenant('untouched', { route: 'public' });
    expect((await finished('untouched', await post('untouched', 'hello'))).state).toBe('COMPLETED');
    const owner = await db().owner();
    await expect(
      owner.query(
        `UPDATE conversation_events SET body = jsonb_set(body, '{message,text}', '"edited"')
          WHERE project_id = 'untouched'`,
      ),
    ).rejects.toThrow(/append-only/);
    await expect(
      owner.query(`DELETE FROM run_steps WHERE project_id = 'untouched'`),
    ).rejects.toThrow(/append-only/);
  });
});
