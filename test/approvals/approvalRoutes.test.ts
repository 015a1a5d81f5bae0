import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey, type ApiKeyRole } from '../../db/apiKeys.ts';
import { getApproval } from '../../db/approvals.ts';
import { getRun } from '../../db/runs.ts';
import { withProject } from '../../db/withProject.ts';
import { stageJobId } from '../../pipeline/contracts/runState.ts';
import { startLineServer } from '../fakes/lineServer.ts';
import { startTelegramServer } from '../../ops/fakes/telegramServer.ts';
import { applyTestTenant, pipelineTenant, TEST_SECRETS } from '../../ops/fakes/pipelineTenant.ts';
import { startPipeline, type Pipeline } from '../helpers/startPipeline.ts';
import { tableCounts } from '../helpers/tableCounts.ts';
import { useTestDatabase } from '../helpers/testDatabase.ts';
import { useRedisPrefix } from '../helpers/useRedisPrefix.ts';
import { waitingApproval } from '../helpers/waitingApproval.ts';

const db = useTestDatabase();
const prefix = useRedisPrefix();

let telegram: Awaited<ReturnType<typeof startTelegramServer>>;
let line: Awaited<ReturnType<typeof startLineServer>>;
let pipeline: Pipeline;
let owner: pg.Client;
let approver: string;
/** Operator keys: one whose id is an ACL approver, one an ACL operator. */
let operators: string[];
let admin: string;
let client: string;
/** An approver key and an admin key of the project whose ids are not ACL approvers. */
let outsiders: string[];

const PROJECT = 'acme';
const OTHER = 'beta';

beforeAll(async () => {
  telegram = await startTelegramServer();
  line = await startLineServer();
  // No workers: a decision's effect is what it writes and which job it enqueues.
  pipeline = await startPipeline({ pool: db().pool, prefix, workers: false });
  owner = await db().owner();
  const tenant = (projectId: string, apiApprovers: string[] = [], apiOperators: string[] = []) =>
    applyTestTenant(
      { pool: db().pool, logger: pipeline.ctx.logger },
      pipelineTenant({
        projectId,
        telegramApiRoot: telegram.apiRoot,
        lineBaseUrl: line.baseUrl,
        approvers: ['5551'],
        apiApprovers,
        apiOperators,
      }),
    );
  for (const projectId of [PROJECT, OTHER]) {
    await tenant(projectId);
    for (const [name, value] of Object.entries(TEST_SECRETS))
      await pipeline.setSecret(projectId, name, value);
  }
  const key = (roles: ApiKeyRole[]) =>
    withProject(db().pool, PROJECT, (tx) =>
      createApiKey(tx, { projectId: PROJECT, name: 'test', roles, actor: 'test' }),
    );
  const approverKey = await key(['approver']);
  const adminKey = await key(['admin']);
  approver = approverKey.key;
  admin = adminKey.key;
  client = (await key(['client'])).key;
  outsiders = [(await key(['approver'])).key, (await key(['admin'])).key];
  const operatorKeys = [await key(['operator']), await key(['operator'])];
  operators = operatorKeys.map((k) => k.key);
  // The keys that decide are approvers in the ACL (`api:<key id>`); the outsiders are not.
  // The operator keys are in the ACL too, one as an approver: the key's role still refuses it.
  await tenant(
    PROJECT,
    [approverKey.keyId, adminKey.keyId, operatorKeys[0]!.keyId],
    [operatorKeys[1]!.keyId],
  );
});

afterAll(async () => {
  await pipeline?.close();
  await Promise.all([telegram?.close(), line?.close()]);
});

type Answer = { status: number; body: Record<string, unknown> };

async function call(
  key: string,
  method: 'GET' | 'POST',
  path: string,
  body?: string,
  projectId = PROJECT,
): Promise<Answer> {
  const res = await fetch(`${pipeline.url}/v1/projects/${projectId}/approvals${path}`, {
    method,
    headers: {
      authorization: `Bearer ${key}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(body === undefined ? {} : { body }),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

const runOf = (runId: string, projectId = PROJECT) =>
  withProject(db().pool, projectId, (tx) => getRun(tx, runId));
const approvalOf = (id: string, projectId = PROJECT) =>
  withProject(db().pool, projectId, (tx) => getApproval(tx, id));
const jobOf = (stage: 'execute' | 'deliver', runId: string, notice = false) =>
  pipeline.queues.queues[stage].getJob(stageJobId(stage, runId, notice));

/** Everything a refused decision must leave as it was. */
async function fingerprint(runId: string) {
  return {
    counts: await tableCounts(owner),
    run: (await runOf(runId))?.state,
    execute: (await jobOf('execute', runId)) !== undefined,
    notice: (await jobOf('deliver', runId, true)) !== undefined,
  };
}

const errorOf = (answer: Answer) => (answer.body.error as { code: string }).code;

describe('POST /v1/projects/:p/approvals/:id/approve', () => {
  it('approves: 200 with the approval, the run is ADMITTED again and an execute job exists', async () => {
    const { run, approval } = await waitingApproval(pipeline, PROJECT);
    expect(await jobOf('execute', run.runId)).toBeUndefined();

    const answer = await call(approver, 'POST', `/${approval.approvalId}/approve`);
    expect(answer.status).toBe(200);
    const keyId = answer.body.decidedBy as string;
    expect(answer.body).toMatchObject({
      id: approval.approvalId,
      runId: run.runId,
      agent: 'helper',
      tool: 'ops.restart_service',
      risk: 'write',
      arguments: { service: 'billing', reason: 'stuck queue' },
      callSha256: approval.callSha256,
      reasons: ['grant_requires_approval', 'risk_write'],
      status: 'approved',
      decidedVia: 'api',
    });
    expect(keyId).toMatch(/^api:[0-9a-f-]{36}$/);
    expect(Date.parse(answer.body.expiresAt as string)).toBe(approval.expiresAt);
    expect(typeof answer.body.decidedAt).toBe('string');

    expect((await runOf(run.runId))?.state).toBe('ADMITTED');
    const job = await jobOf('execute', run.runId);
    expect(job?.data).toMatchObject({ projectId: PROJECT, runId: run.runId, stage: 'execute' });
    const { rows } = await owner.query<{ action: string; actor: string }>(
      `SELECT action, actor FROM audit_events WHERE chain = $1 AND action LIKE 'approval.%'`,
      [`run:${run.runId}`],
    );
    expect(rows).toEqual([{ action: 'approval.approved', actor: keyId }]);
  });

  it('refuses a second decision with 409 APPROVAL_ALREADY_DECIDED and changes nothing', async () => {
    const { run, approval } = await waitingApproval(pipeline, PROJECT);
    expect((await call(admin, 'POST', `/${approval.approvalId}/approve`)).status).toBe(200);
    const before = await fingerprint(run.runId);
    for (const action of ['approve', 'reject']) {
      const again = await call(approver, 'POST', `/${approval.approvalId}/${action}`);
      expect(again.status).toBe(409);
      expect(errorOf(again)).toBe('APPROVAL_ALREADY_DECIDED');
      expect((again.body.error as { message: string }).message).toContain('already approved by');
    }
    expect(await fingerprint(run.runId)).toEqual(before);
    expect((await approvalOf(approval.approvalId))?.status).toBe('approved');
  });

  it('refuses another call digest with 409 APPROVAL_MISMATCH and changes nothing; the right one approves', async () => {
    const { run, approval } = await waitingApproval(pipeline, PROJECT);
    const before = await fingerprint(run.runId);
    const wrong = await call(
      approver,
      'POST',
      `/${approval.approvalId}/approve`,
      JSON.stringify({ callSha256: 'a'.repeat(64) }),
    );
    expect(wrong.status).toBe(409);
    expect(errorOf(wrong)).toBe('APPROVAL_MISMATCH');
    expect(await fingerprint(run.runId)).toEqual(before);
    expect((await approvalOf(approval.approvalId))?.status).toBe('pending');

    const right = await call(
      approver,
      'POST',
      `/${approval.approvalId}/approve`,
      JSON.stringify({ callSha256: approval.callSha256.toUpperCase() }),
    );
    expect(right.status).toBe(200);
    expect((await runOf(run.runId))?.state).toBe('ADMITTED');
  });

  it('refuses an expired approval with 409 APPROVAL_EXPIRED and changes nothing', async () => {
    const { run, approval } = await waitingApproval(pipeline, PROJECT);
    await owner.query(
      `UPDATE approvals SET expires_at = now() - interval '1 minute' WHERE approval_id = $1`,
      [approval.approvalId],
    );
    const before = await fingerprint(run.runId);
    const answer = await call(approver, 'POST', `/${approval.approvalId}/approve`);
    expect(answer.status).toBe(409);
    expect(errorOf(answer)).toBe('APPROVAL_EXPIRED');
    expect(await fingerprint(run.runId)).toEqual(before);
    expect((await approvalOf(approval.approvalId))?.status).toBe('pending');
  });
});

describe('POST /v1/projects/:p/approvals/:id/reject', () => {
  it('rejects: the run FAILS with APPROVAL_REJECTED and the failure notice is queued for deliver', async () => {
    const { run, approval } = await waitingApproval(pipeline, PROJECT);
    const answer = await call(approver, 'POST', `/${approval.approvalId}/reject`, '{}');
    expect(answer.status).toBe(200);
    expect(answer.body).toMatchObject({ status: 'rejected', decidedVia: 'api' });

    const failed = await runOf(run.runId);
    expect(failed).toMatchObject({ state: 'FAILED', failureCode: 'APPROVAL_REJECTED' });
    const { rows } = await owner.query<{ kind: string; status: string }>(
      'SELECT kind, status FROM outbound_messages WHERE run_id = $1',
      [run.runId],
    );
    expect(rows).toEqual([{ kind: 'failure', status: 'queued' }]);
    expect((await jobOf('deliver', run.runId, true))?.data).toMatchObject({
      runId: run.runId,
      stage: 'deliver',
    });
    expect(await jobOf('execute', run.runId)).toBeUndefined();
  });
});

describe('refusals', () => {
  it('refuses a client key with 403 and changes nothing', async () => {
    const { run, approval } = await waitingApproval(pipeline, PROJECT);
    const before = await fingerprint(run.runId);
    for (const [method, path] of [
      ['POST', `/${approval.approvalId}/approve`],
      ['POST', `/${approval.approvalId}/reject`],
      ['GET', ''],
    ] as const) {
      const answer = await call(client, method, path);
      expect(answer.status).toBe(403);
      expect(errorOf(answer)).toBe('FORBIDDEN');
    }
    expect(await fingerprint(run.runId)).toEqual(before);
  });

  // Regression (issue 15, item 7): an operator key decided approvals; deciding needs the
  // approver role (or admin) on the key, whatever the ACL says of its id.
  it('refuses an operator key with 403 FORBIDDEN naming the approver role, even one the ACL names an approver, and changes nothing', async () => {
    const { run, approval } = await waitingApproval(pipeline, PROJECT);
    const before = await fingerprint(run.runId);
    for (const key of operators) {
      for (const action of ['approve', 'reject']) {
        const answer = await call(key, 'POST', `/${approval.approvalId}/${action}`);
        expect(answer.status).toBe(403);
        expect(answer.body.error).toEqual({
          code: 'FORBIDDEN',
          message: 'this key may not approvals.decide: it needs the approver or admin role',
        });
      }
      // an operator still sees them
      expect((await call(key, 'GET', '')).status).toBe(200);
    }
    expect(await fingerprint(run.runId)).toEqual(before);
    expect((await approvalOf(approval.approvalId))?.status).toBe('pending');
    expect((await call(approver, 'POST', `/${approval.approvalId}/approve`)).status).toBe(200);
  });

  // Regression (issue 12, item 4): any operator key could decide; the ACL approver role was
  // checked on Telegram presses alone.
  it('refuses an approver or admin key that is no ACL approver with 403 NOT_APPROVER and changes nothing', async () => {
    const { run, approval } = await waitingApproval(pipeline, PROJECT);
    const before = await fingerprint(run.runId);
    for (const key of outsiders) {
      for (const action of ['approve', 'reject']) {
        const answer = await call(key, 'POST', `/${approval.approvalId}/${action}`);
        expect(answer.status).toBe(403);
        expect(errorOf(answer)).toBe('NOT_APPROVER');
        expect((answer.body.error as { message: string }).message).toMatch(
          /^api:[0-9a-f-]{36} may not decide approvals of acme/,
        );
      }
      // it may still read them
      expect((await call(key, 'GET', '')).status).toBe(200);
    }
    expect(await fingerprint(run.runId)).toEqual(before);
    expect((await approvalOf(approval.approvalId))?.status).toBe('pending');
    expect((await call(approver, 'POST', `/${approval.approvalId}/approve`)).status).toBe(200);
  });

  it('answers an unknown or malformed id with 404 APPROVAL_NOT_FOUND, never 500', async () => {
    for (const id of [crypto.randomUUID(), 'not-a-uuid', "1' OR '1'='1", 'x'.repeat(300)]) {
      const answer = await call(approver, 'POST', `/${encodeURIComponent(id)}/approve`);
      expect(answer.status).toBe(404);
      expect(errorOf(answer)).toBe('APPROVAL_NOT_FOUND');
    }
  });

  it("does not let one project's key decide another project's approval (404)", async () => {
    const other = await waitingApproval(pipeline, OTHER);
    const answer = await call(approver, 'POST', `/${other.approval.approvalId}/approve`);
    expect(answer.status).toBe(404);
    expect(errorOf(answer)).toBe('APPROVAL_NOT_FOUND');
    // and the key of this project is no key at all for the other one
    const cross = await call(approver, 'POST', `/${other.approval.approvalId}/approve`, '', OTHER);
    expect(cross.status).toBe(401);
    expect((await approvalOf(other.approval.approvalId, OTHER))?.status).toBe('pending');
  });

  it('refuses a bad body with 400 BODY_INVALID naming the field', async () => {
    const { run, approval } = await waitingApproval(pipeline, PROJECT);
    const before = await fingerprint(run.runId);
    for (const [body, field] of [
      [JSON.stringify({ callSha256: 'abc' }), 'callSha256'],
      [JSON.stringify({ callSha256: 42 }), 'callSha256'],
      [JSON.stringify({ sha: approval.callSha256 }), 'sha'],
      ['[]', '(root)'],
    ] as const) {
      const answer = await call(approver, 'POST', `/${approval.approvalId}/approve`, body);
      expect(answer.status).toBe(400);
      expect(errorOf(answer)).toBe('BODY_INVALID');
      expect((answer.body.error as { message: string }).message).toContain(`${field}:`);
    }
    const malformed = await call(approver, 'POST', `/${approval.approvalId}/approve`, '{"call');
    expect(malformed.status).toBe(400);
    expect(errorOf(malformed)).toBe('MALFORMED_JSON');
    expect(await fingerprint(run.runId)).toEqual(before);
  });
});

describe('GET /v1/projects/:p/approvals', () => {
  it('lists approvals newest first, filtered by status and run', async () => {
    const a = await waitingApproval(pipeline, PROJECT, { tool: 'ops.flush_cache' });
    const b = await waitingApproval(pipeline, PROJECT, { tool: 'ops.flush_cache' });
    await call(approver, 'POST', `/${a.approval.approvalId}/reject`);

    const pending = await call(approver, 'GET', '?status=pending');
    expect(pending.status).toBe(200);
    const list = pending.body.approvals as { id: string; status: string }[];
    expect(list.every((x) => x.status === 'pending')).toBe(true);
    expect(list.map((x) => x.id)).toContain(b.approval.approvalId);
    expect(list.map((x) => x.id)).not.toContain(a.approval.approvalId);

    const byRun = await call(admin, 'GET', `?run=${a.run.runId}`);
    expect(byRun.body.approvals).toEqual([
      expect.objectContaining({
        id: a.approval.approvalId,
        runId: a.run.runId,
        tool: 'ops.flush_cache',
        status: 'rejected',
        decidedVia: 'api',
      }),
    ]);
    const all = (await call(approver, 'GET', '')).body.approvals as { id: string }[];
    expect(all.findIndex((x) => x.id === b.approval.approvalId)).toBeLessThan(
      all.findIndex((x) => x.id === a.approval.approvalId),
    );
  });

  it('refuses a bad filter with 400 QUERY_INVALID naming it', async () => {
    for (const [query, field] of [
      ['?status=waiting', 'status'],
      ['?run=nope', 'run'],
      ['?limit=0', 'limit'],
    ]) {
      const answer = await call(approver, 'GET', query!);
      expect(answer.status).toBe(400);
      expect(errorOf(answer)).toBe('QUERY_INVALID');
      expect((answer.body.error as { message: string }).message).toContain(`${field}:`);
    }
  });
});
