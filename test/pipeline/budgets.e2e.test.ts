// Regression (issue 15, item 1): a tenant applied with `budget: { dailyTokens: 1, perRunUsd:
// 0.000001 }` ran its runs to COMPLETED; budget fields were validated and never read. Here
// every limit stops a run with BUDGET_EXCEEDED before it spends more (the fake model server
// counts what reached it), and concurrent runs cannot together pass a project's day.
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { telegramUpdate } from '../../ops/fakes/channelPayloads.ts';
import { applyTestTenant, pipelineTenant, TEST_SECRETS } from '../../ops/fakes/pipelineTenant.ts';
import { startTelegramServer } from '../../ops/fakes/telegramServer.ts';
import { projectNode } from '../../ops/projectNode.ts';
import { renderMetrics } from '../../ops/metrics/renderMetrics.ts';
import { TenantFile } from '../../pipeline/contracts/tenantFile.ts';
import { startMcpHttpServer, type McpHttpServer } from '../fakes/mcpHttpServer.ts';
import { startModelServer, type RecordedRequest } from '../fakes/modelServer.ts';
import { startPipeline, type Pipeline } from '../helpers/startPipeline.ts';
import { useTestDatabase } from '../helpers/testDatabase.ts';
import { TEST_REDIS_URL, useRedisPrefix } from '../helpers/useRedisPrefix.ts';
import { waitFor } from '../helpers/waitFor.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const db = useTestDatabase();
const prefix = useRedisPrefix();
const NOTICE = 'Sorry, I could not finish that. The team has been told.';
const HTTP_TOKEN = 'budget-http-mcp-token-4c1d9e7a';

let telegram: Awaited<ReturnType<typeof startTelegramServer>>;
let model: Awaited<ReturnType<typeof startModelServer>>;
let http: McpHttpServer;
let pipeline: Pipeline;
let nextUpdateId = 1;
let nextChat = 70_000;
const children: ChildProcess[] = [];

beforeAll(async () => {
  telegram = await startTelegramServer();
  model = await startModelServer();
  http = await startMcpHttpServer({ token: HTTP_TOKEN });
  pipeline = await startPipeline({ pool: db().pool, sweeperPool: db().sweeperPool, prefix });
});

afterAll(async () => {
  for (const child of children) child.kill('SIGKILL');
  await pipeline?.close();
  await Promise.all([telegram?.close(), model?.close(), http?.close()]);
});

type Budgets = {
  policyBudget?: Record<string, number>;
  projectBudget?: Record<string, number>;
  prices?: Record<string, { inputUsdPerMTok: number; outputUsdPerMTok: number }>;
  tools?: boolean;
  /** Telegram user ids in the ACL as admins (owners), with the `ops` approvals account. */
  owners?: readonly string[];
};

/** Applies a test tenant with the given budgets (validated as apply validates a file). */
async function applyBudgetTenant(projectId: string, b: Budgets) {
  const base = pipelineTenant({
    projectId,
    telegramApiRoot: telegram.apiRoot,
    lineBaseUrl: telegram.apiRoot,
    modelBaseUrl: model.url,
    ...(b.owners ? { approvers: [] } : {}),
  });
  const policy = base.tenant.policies.default!;
  const tenant = TenantFile.parse({
    ...base.tenant,
    project: {
      ...base.tenant.project,
      ...(b.projectBudget ? { budget: b.projectBudget } : {}),
      acl: {
        members: [
          ...base.tenant.project.acl.members,
          ...(b.owners ?? []).map((id) => ({ subject: `telegram:${id}`, roles: ['admin'] })),
        ],
      },
    },
    policies: {
      default: {
        ...policy,
        ...(b.policyBudget ? { budget: b.policyBudget } : {}),
        ...(b.prices ? { prices: b.prices } : {}),
      },
    },
    ...(b.tools
      ? {
          agents: {
            helper: { ...base.tenant.agents.helper, maxSteps: 4, tools: ['web.lookup'] },
          },
          mcpGateway: {
            servers: [
              {
                name: 'web',
                contextDomain: 'general',
                environment: 'prod',
                transport: {
                  type: 'streamable_http',
                  url: http.url,
                  headers: { Authorization: 'secret:mcp-http' },
                },
                tools: [{ name: 'lookup', risk: 'read' }],
              },
            ],
            grants: [{ agent: 'helper', tools: ['web.lookup'], environments: ['prod'] }],
          },
        }
      : {}),
  });
  await applyTestTenant(
    { pool: db().pool, logger: pipeline.ctx.logger },
    { tenant, artifacts: base.artifacts },
  );
  for (const [name, value] of Object.entries(TEST_SECRETS))
    await pipeline.setSecret(projectId, name, value);
  if (b.tools) await pipeline.setSecret(projectId, 'mcp-http', `Bearer ${HTTP_TOKEN}`);
}

async function post(projectId: string, chatId: number, text: string) {
  const res = await fetch(`${pipeline.url}/webhooks/telegram/${projectId}/tg`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'x-telegram-bot-api-secret-token': TEST_SECRETS['tg-webhook'],
    },
    body: JSON.stringify(telegramUpdate({ updateId: nextUpdateId++, chatId, text })),
  });
  expect(res.status).toBe(200);
}

const sentTo = (chatId: number) =>
  telegram.sent.filter((m) => String(m.chat_id) === String(chatId)).map((m) => m.text);

/** Model requests whose last user message is `text`. */
const requestsFor = (text: string) =>
  model.requests.filter((r: RecordedRequest) =>
    r.body.messages.some((m) => m.role === 'user' && m.content === text),
  ).length;

/** The finished run of the message `text` in `projectId`. */
async function finished(projectId: string, text: string) {
  const owner = await db().owner();
  return waitFor(
    async () => {
      const { rows } = await owner.query<{
        run_id: string;
        state: string;
        failure_code: string | null;
      }>(
        `SELECT r.run_id, r.state, r.failure_code FROM runs r
           JOIN conversation_events e ON e.event_id = r.event_id
          WHERE r.project_id = $1 AND e.body->'message'->>'text' = $2`,
        [projectId, text],
      );
      const run = rows[0];
      return run && ['COMPLETED', 'FAILED'].includes(run.state) ? run : undefined;
    },
    { what: `the run of "${text}"`, timeoutMs: 120_000 },
  );
}

async function periods(projectId: string) {
  const owner = await db().owner();
  const { rows } = await owner.query<{
    period: string;
    tokens_reserved: string;
    tokens_spent: string;
    usd_reserved: string;
    usd_spent: string;
  }>(`SELECT * FROM budget_periods WHERE project_id = $1 ORDER BY period`, [projectId]);
  return rows.map((r) => ({
    period: r.period,
    tokensReserved: Number(r.tokens_reserved),
    tokensSpent: Number(r.tokens_spent),
    usdReserved: Number(r.usd_reserved),
    usdSpent: Number(r.usd_spent),
  }));
}

async function reservations(runId: string) {
  const owner = await db().owner();
  const { rows } = await owner.query<{
    step_key: string;
    status: string;
    tokens_reserved: string;
    input_tokens: string;
    output_tokens: string;
    usd: string;
  }>(`SELECT * FROM budget_reservations WHERE run_id = $1 ORDER BY step_key`, [runId]);
  return rows.map((r) => ({
    stepKey: r.step_key,
    status: r.status,
    tokensReserved: Number(r.tokens_reserved),
    tokens: Number(r.input_tokens) + Number(r.output_tokens),
    usd: Number(r.usd),
  }));
}

/** Sends one message and waits for its run; returns it with its chat id. */
async function runOnce(projectId: string, text: string) {
  const chatId = nextChat++;
  await post(projectId, chatId, text);
  return { chatId, ...(await finished(projectId, text)) };
}

describe('budgets, reserved before spending', () => {
  it('stops a run over its token budget before the model is asked, and tells the user', async () => {
    await applyBudgetTenant('tok', { policyBudget: { perRunTokens: 200 } });
    const run = await runOnce('tok', 'too many tokens');
    expect(run.state).toBe('FAILED');
    expect(run.failure_code).toBe('BUDGET_EXCEEDED');
    expect(requestsFor('too many tokens')).toBe(0);
    await waitFor(() => (sentTo(run.chatId).length > 0 ? true : undefined), {
      what: 'the failure notice',
      timeoutMs: 60_000,
    });
    expect(sentTo(run.chatId)).toEqual([NOTICE]);
    expect(await reservations(run.run_id)).toEqual([]);
  });

  it('lets a run within its budgets complete, and settles what the provider reported', async () => {
    await applyBudgetTenant('fits', {
      policyBudget: { perRunTokens: 5000, perRunUsd: 1 },
      projectBudget: { dailyLimitUsd: 5, monthlyLimitTokens: 1_000_000 },
      prices: { 'test-model': { inputUsdPerMTok: 10, outputUsdPerMTok: 30 } },
    });
    const run = await runOnce('fits', 'a small question');
    expect(run.state).toBe('COMPLETED');
    const rows = await reservations(run.run_id);
    expect(rows).toHaveLength(1);
    const usage = model.requests.findLast(
      (r) => r.body.messages.at(-1)?.content === 'a small question',
    );
    expect(usage).toBeDefined();
    const [step] = rows;
    expect(step!.stepKey).toBe('model:0');
    expect(step!.status).toBe('settled');
    // The hold was an upper bound (max output 1024), the spend is the usage reported.
    expect(step!.tokensReserved).toBeGreaterThan(1024);
    expect(step!.tokens).toBeGreaterThan(0);
    expect(step!.tokens).toBeLessThan(step!.tokensReserved);
    const owner = await db().owner();
    const { rows: out } = await owner.query<{ output: { usage: Record<string, number> } }>(
      `SELECT output FROM runs WHERE run_id = $1`,
      [run.run_id],
    );
    const { inputTokens, outputTokens } = out[0]!.output.usage as {
      inputTokens: number;
      outputTokens: number;
    };
    expect(step!.tokens).toBe(inputTokens + outputTokens);
    expect(step!.usd).toBeCloseTo((inputTokens * 10 + outputTokens * 30) / 1e6, 12);
    for (const p of await periods('fits')) {
      expect(p.tokensReserved).toBe(0);
      expect(p.usdReserved).toBe(0);
      expect(p.tokensSpent).toBe(inputTokens + outputTokens);
    }
  });

  it('stops a run over its cost budget before the model is asked', async () => {
    await applyBudgetTenant('cost', {
      // the hold for 1024 output tokens at $30/MTok is about $0.03
      policyBudget: { perRunUsd: 0.01 },
      prices: { 'test-model': { inputUsdPerMTok: 10, outputUsdPerMTok: 30 } },
    });
    const run = await runOnce('cost', 'too expensive');
    expect(run.failure_code).toBe('BUDGET_EXCEEDED');
    expect(requestsFor('too expensive')).toBe(0);
  });

  it('stops a run at its tool-call budget: no further call and no further model step', async () => {
    await applyBudgetTenant('tools', { policyBudget: { perRunToolCalls: 1 }, tools: true });
    const callsBefore = http.calls.length;
    model.setBehaviour((request) =>
      request.body.messages.some((m) => m.content === 'look up twice') &&
      !request.body.messages.some((m) => m.role === 'tool')
        ? {
            toolCalls: [
              { name: 'web__lookup', arguments: { key: 'cpu' } },
              { name: 'web__lookup', arguments: { key: 'disk' } },
            ],
          }
        : undefined,
    );
    try {
      const run = await runOnce('tools', 'look up twice');
      expect(run.failure_code).toBe('BUDGET_EXCEEDED');
      // one model step, one of its two calls made, then nothing
      expect(requestsFor('look up twice')).toBe(1);
      expect(http.calls.length - callsBefore).toBe(1);
      expect((await reservations(run.run_id)).map((r) => r.stepKey)).toEqual([
        'model:0',
        'tool:0:0',
      ]);
    } finally {
      model.setBehaviour(null);
    }
  });

  it('cuts a model call off at the wall-time budget, fails the run and gives its hold back', async () => {
    await applyBudgetTenant('wall', { policyBudget: { perRunWallMs: 3000 } });
    model.setBehaviour((request) =>
      request.body.messages.some((m) => m.content === 'take your time')
        ? { content: 'too late', delayMs: 30_000 }
        : undefined,
    );
    try {
      const run = await runOnce('wall', 'take your time');
      expect(run.failure_code).toBe('BUDGET_EXCEEDED');
      // the one call that was cut off; no retry asked the model again
      expect(requestsFor('take your time')).toBe(1);
      expect(await reservations(run.run_id)).toEqual([
        expect.objectContaining({ stepKey: 'model:0', status: 'released', tokens: 0 }),
      ]);
      for (const p of await periods('wall')) expect(p.tokensReserved).toBe(0);
    } finally {
      model.setBehaviour(null);
    }
  });

  it('lets concurrent runs of one project together spend no more than its day', async () => {
    // The first run measures what one run holds; then the day's limit leaves room for three.
    await applyBudgetTenant('day', {});
    const first = await runOnce('day', 'budget run 00');
    expect(first.state).toBe('COMPLETED');
    const [held] = await reservations(first.run_id);
    const hold = held!.tokensReserved;
    // A project without a day limit keeps no period row: what it spent is in its steps.
    expect(await periods('day')).toEqual([]);
    const owner0 = await db().owner();
    const { rows: spent } = await owner0.query<{ tokens: string }>(
      `SELECT coalesce(sum(input_tokens + output_tokens), 0) AS tokens FROM budget_reservations
        WHERE project_id = 'day' AND status = 'settled'`,
    );
    const spentSoFar = { tokensSpent: Number(spent[0]!.tokens) };
    const limit = spentSoFar.tokensSpent + 3 * hold + 1;
    await applyBudgetTenant('day', {
      projectBudget: { dailyLimitTokens: limit, alertAtPercent: 50 },
    });
    // Each run reports exactly its hold, so a settled run frees nothing for a fourth.
    model.setBehaviour((request) => {
      const text = request.body.messages.at(-1)?.content;
      if (typeof text !== 'string' || !text.startsWith('budget run ')) return undefined;
      return {
        delayMs: 1500,
        body: {
          id: 'chatcmpl-budget',
          object: 'chat.completion',
          created: 0,
          model: 'test-model',
          choices: [
            { index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' },
          ],
          usage: { prompt_tokens: hold - 1, completion_tokens: 1, total_tokens: hold },
        },
      };
    });
    try {
      const texts = Array.from(
        { length: 10 },
        (_, i) => `budget run ${String(i + 1).padStart(2, '0')}`,
      );
      await Promise.all(texts.map((text) => post('day', nextChat++, text)));
      const runs = await Promise.all(texts.map((text) => finished('day', text)));
      const completed = runs.filter((r) => r.state === 'COMPLETED');
      expect(completed).toHaveLength(3);
      expect(runs.filter((r) => r.failure_code === 'BUDGET_EXCEEDED')).toHaveLength(7);
      expect(texts.reduce((n, text) => n + requestsFor(text), 0)).toBe(3);
      const day = (await periods('day')).find((p) => p.period.startsWith('day:'))!;
      expect(day.tokensReserved).toBe(0);
      expect(day.tokensSpent).toBeLessThanOrEqual(limit);
      expect(day.tokensSpent).toBe(spentSoFar.tokensSpent + 3 * hold);
    } finally {
      model.setBehaviour(null);
    }
    // Past half the day's tokens: the owners were told once.
    const owner = await db().owner();
    const { rows: alerts } = await owner.query(
      `SELECT limit_name FROM budget_alerts WHERE project_id = 'day'`,
    );
    expect(alerts).toEqual([{ limit_name: 'dailyLimitTokens' }]);
    const { rows: audit } = await owner.query(
      `SELECT subject FROM audit_events WHERE project_id = 'day' AND action = 'budget.alert'`,
    );
    expect(audit).toEqual([{ subject: 'dailyLimitTokens' }]);
    const metrics = await renderMetrics({
      pool: db().sweeperPool,
      redis: pipeline.ctx.redis,
      prefix,
      queues: pipeline.queues.queues,
    });
    expect(metrics).toContain('awooop_budget_alerts{project="day",limit="dailyLimitTokens"} 1');
  });
});

describe("budget alerts reach the project's owners", () => {
  it('tells each owner on the approvals account once, after the run that crossed the share', async () => {
    const OWNER = '7001';
    await applyBudgetTenant('alerted', {
      projectBudget: { dailyLimitTokens: 1_000_000, alertAtPercent: 1 },
      owners: [OWNER],
    });
    // Each run reports 15,000 tokens: the first passes 1% of the day's million, the second
    // passes it again, and the owner is told once.
    model.setBehaviour((request) => {
      const text = request.body.messages.at(-1)?.content;
      if (typeof text !== 'string' || !text.startsWith('alert run ')) return undefined;
      return {
        body: {
          id: 'chatcmpl-alert',
          object: 'chat.completion',
          created: 0,
          model: 'test-model',
          choices: [
            { index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' },
          ],
          usage: { prompt_tokens: 14_999, completion_tokens: 1, total_tokens: 15_000 },
        },
      };
    });
    try {
      const first = await runOnce('alerted', 'alert run 1');
      expect(first.state).toBe('COMPLETED');
      const told = await waitFor(
        () => {
          const sent = telegram.sent.filter((m) => String(m.chat_id) === OWNER);
          return sent.length > 0 ? sent : undefined;
        },
        { what: 'the alert to the owner', timeoutMs: 30_000 },
      );
      expect(told).toHaveLength(1);
      expect(told[0]!.text).toContain('Budget alert');
      expect(told[0]!.text).toContain('Project: alerted');
      expect(told[0]!.text).toContain('dailyLimitTokens: 15000 tokens of 1000000 tokens');
      // The owner's alert is no answer to the user: the user's chat got only its reply.
      expect(sentTo(first.chatId)).toEqual(['ok']);
      const second = await runOnce('alerted', 'alert run 2');
      expect(second.state).toBe('COMPLETED');
      expect(sentTo(second.chatId)).toEqual(['ok']);
    } finally {
      model.setBehaviour(null);
    }
    expect(telegram.sent.filter((m) => String(m.chat_id) === OWNER)).toHaveLength(1);
    const owner = await db().owner();
    const { rows } = await owner.query(
      `SELECT kind, status, recipient, alert_key, method FROM outbound_messages
        WHERE project_id = 'alerted' AND kind = 'alert'`,
    );
    expect(rows).toEqual([
      {
        kind: 'alert',
        status: 'sent',
        recipient: OWNER,
        alert_key: expect.stringMatching(/^day:\d{4}-\d{2}-\d{2}\/dailyLimitTokens$/),
        method: 'tellMember',
      },
    ]);
    const { rows: audit } = await owner.query(
      `SELECT action, detail->>'recipient' AS recipient FROM audit_events
        WHERE project_id = 'alerted' AND action LIKE 'budget.alert%' ORDER BY audit_id`,
    );
    expect(audit).toEqual([
      { action: 'budget.alert', recipient: null },
      { action: 'budget.alert_sent', recipient: `telegram:${OWNER}` },
    ]);
  });
});

/** A real `awooop worker execute` process on this file's database and Redis prefix. */
function startExecuteWorker(): ChildProcess {
  const child = spawn(projectNode(), ['ops/awooop.ts', 'worker', 'execute'], {
    cwd: ROOT,
    env: {
      ...process.env,
      DATABASE_URL: db().url,
      REDIS_URL: TEST_REDIS_URL,
      AWOOOP_REDIS_PREFIX: prefix,
      AWOOOP_SECRET_KEY: pipeline.secretKey.toString('hex'),
      AWOOOP_JOB_LOCK_MS: '2000',
      AWOOOP_WORKER_CONCURRENCY: '2',
      LOG_LEVEL: 'error',
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  children.push(child);
  return child;
}

describe('a worker killed after reserving', () => {
  it('neither loses nor double-counts the hold: the next try reuses and settles it', async () => {
    await applyBudgetTenant('killed', { projectBudget: { dailyLimitTokens: 1_000_000 } });
    await pipeline.stopWorkers();
    pipeline.startWorkers(['resolve', 'policy', 'sanitize', 'deliver']);
    const first = startExecuteWorker();
    model.setDelay(60_000);
    const text = 'die after reserving';
    const chatId = nextChat++;
    try {
      await post('killed', chatId, text);
      // The hold is written and the model asked: the worker is between reserve and settle.
      await waitFor(() => (requestsFor(text) >= 1 ? true : undefined), {
        what: 'the model request',
        timeoutMs: 90_000,
      });
      const owner = await db().owner();
      const { rows } = await owner.query<{ status: string }>(
        `SELECT status FROM budget_reservations WHERE project_id = 'killed'`,
      );
      expect(rows).toEqual([{ status: 'reserved' }]);
      first.kill('SIGKILL');
      await new Promise((r) => first.once('exit', r));
      model.setDelay(0);
      startExecuteWorker();
      const run = await finished('killed', text);
      expect(run.state).toBe('COMPLETED');
      // The second try asked again (the first answer was never seen) under the same hold.
      expect(requestsFor(text)).toBe(2);
      const rowsAfter = await reservations(run.run_id);
      expect(rowsAfter).toEqual([
        expect.objectContaining({ stepKey: 'model:0', status: 'settled' }),
      ]);
      const day = (await periods('killed')).find((p) => p.period.startsWith('day:'))!;
      expect(day.tokensReserved).toBe(0);
      expect(day.tokensSpent).toBe(rowsAfter[0]!.tokens);
    } finally {
      model.setDelay(0);
      for (const child of children) child.kill('SIGKILL');
      await pipeline.stopWorkers();
      pipeline.startWorkers();
    }
  });
});
