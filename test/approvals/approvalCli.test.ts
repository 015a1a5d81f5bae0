import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getApproval } from '../../db/approvals.ts';
import { getRun } from '../../db/runs.ts';
import { withProject } from '../../db/withProject.ts';
import { stageJobId } from '../../pipeline/contracts/runState.ts';
import { startLineServer } from '../fakes/lineServer.ts';
import { startTelegramServer } from '../../ops/fakes/telegramServer.ts';
import {
  applyTestTenant,
  pipelineTenant,
  setUpTestTenant,
} from '../../ops/fakes/pipelineTenant.ts';
import { createApiKey } from '../../db/apiKeys.ts';
import { runCli } from '../helpers/runCli.ts';
import { startPipeline, type Pipeline } from '../helpers/startPipeline.ts';
import { useTestDatabase } from '../helpers/testDatabase.ts';
import { TEST_REDIS_URL, useRedisPrefix } from '../helpers/useRedisPrefix.ts';
import { waitingApproval } from '../helpers/waitingApproval.ts';

const db = useTestDatabase();
const prefix = useRedisPrefix();

let telegram: Awaited<ReturnType<typeof startTelegramServer>>;
let line: Awaited<ReturnType<typeof startLineServer>>;
let pipeline: Pipeline;

const PROJECT = 'acme';
const awooop = (...args: string[]) =>
  runCli(args, { DATABASE_URL: db().url, REDIS_URL: TEST_REDIS_URL, AWOOOP_REDIS_PREFIX: prefix });
/** An approver of the test tenant (ACL `telegram:5551`, role approver). */
const approver = 'telegram:5551';
/** Project keys the CLI can act with (`--key`); every one's id is an ACL approver. */
const keys: Record<'operator' | 'approver', { keyId: string; key: string }> = {} as never;

beforeAll(async () => {
  telegram = await startTelegramServer();
  line = await startLineServer();
  pipeline = await startPipeline({ pool: db().pool, prefix, workers: false });
  const options = {
    projectId: PROJECT,
    telegramApiRoot: telegram.apiRoot,
    lineBaseUrl: line.baseUrl,
    approvers: ['5551'],
    viewers: ['7770'],
    operators: ['7771'],
  };
  await setUpTestTenant(pipeline, db().pool, options);
  for (const role of ['operator', 'approver'] as const) {
    keys[role] = await withProject(db().pool, PROJECT, (tx) =>
      createApiKey(tx, { projectId: PROJECT, name: role, roles: [role], actor: 'test' }),
    );
  }
  // Both keys are ACL approvers: what refuses the operator key is its own role.
  await applyTestTenant(
    { pool: db().pool, logger: pipeline.ctx.logger },
    pipelineTenant({ ...options, apiApprovers: [keys.operator.keyId, keys.approver.keyId] }),
  );
});

afterAll(async () => {
  await pipeline?.close();
  await Promise.all([telegram?.close(), line?.close()]);
});

const runOf = (runId: string) => withProject(db().pool, PROJECT, (tx) => getRun(tx, runId));
const approvalOf = (id: string) => withProject(db().pool, PROJECT, (tx) => getApproval(tx, id));

describe('awooop approvals', () => {
  it('lists a pending approval, as text and as JSON', async () => {
    const { run, approval } = await waitingApproval(pipeline, PROJECT, { tool: 'ops.scale_down' });
    const text = await awooop('approvals', 'list', '--project', PROJECT, '--status', 'pending');
    expect(text.stderr).toBe('');
    expect(text.code).toBe(0);
    const row = text.stdout.split('\n').find((l) => l.startsWith(approval.approvalId));
    expect(row).toContain('pending');
    expect(row).toContain('ops.scale_down (write)');
    expect(row).toContain(`run ${run.runId}`);

    const json = await awooop('approvals', 'list', '--project', PROJECT, '--json');
    expect(json.code).toBe(0);
    expect(JSON.parse(json.stdout)).toContainEqual(
      expect.objectContaining({
        id: approval.approvalId,
        runId: run.runId,
        tool: 'ops.scale_down',
        status: 'pending',
        callSha256: approval.callSha256,
      }),
    );
  });

  it('approves with --sha as the --as approver: the run is ADMITTED and execute is queued', async () => {
    const { run, approval } = await waitingApproval(pipeline, PROJECT);
    const result = await awooop(
      'approvals',
      'approve',
      approval.approvalId,
      '--project',
      PROJECT,
      '--as',
      approver,
      '--sha',
      approval.callSha256,
    );
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toContain(`approved ${approval.approvalId}`);
    expect(await approvalOf(approval.approvalId)).toMatchObject({
      status: 'approved',
      decidedBy: approver,
      decidedVia: 'cli',
    });
    expect((await runOf(run.runId))?.state).toBe('ADMITTED');
    expect(
      await pipeline.queues.queues.execute.getJob(stageJobId('execute', run.runId)),
    ).toBeDefined();

    const again = await awooop(
      'approvals',
      'approve',
      approval.approvalId,
      '--project',
      PROJECT,
      '--as',
      approver,
    );
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('APPROVAL_ALREADY_DECIDED');
  });

  it('rejects: the run fails with APPROVAL_REJECTED', async () => {
    const { run, approval } = await waitingApproval(pipeline, PROJECT);
    const result = await awooop(
      'approvals',
      'reject',
      approval.approvalId,
      '-p',
      PROJECT,
      '--as',
      'email:owner@example.test',
    );
    expect(result.code).toBe(0);
    expect(await runOf(run.runId)).toMatchObject({
      state: 'FAILED',
      failureCode: 'APPROVAL_REJECTED',
    });
  });

  it('refuses a wrong --sha (exit 1, APPROVAL_MISMATCH) and changes nothing', async () => {
    const { run, approval } = await waitingApproval(pipeline, PROJECT);
    const result = await awooop(
      'approvals',
      'approve',
      approval.approvalId,
      '--project',
      PROJECT,
      '--as',
      approver,
      '--sha',
      'b'.repeat(64),
    );
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('APPROVAL_MISMATCH');
    expect((await approvalOf(approval.approvalId))?.status).toBe('pending');
    expect((await runOf(run.runId))?.state).toBe('WAITING_APPROVAL');
  });

  // Regression (issue 12, item 4): the CLI decided for whoever ran it, approver or not.
  it('refuses a decision without --as (exit 2) or --as someone who is no approver (exit 1), changing nothing', async () => {
    const { run, approval } = await waitingApproval(pipeline, PROJECT);
    const base = ['approvals', 'approve', approval.approvalId, '--project', PROJECT];
    const unnamed = await awooop(...base);
    expect(unnamed.code).toBe(2);
    expect(unnamed.stderr).toContain('--as: name the approver');
    // One CLI process per case (each is a Node start): approve and reject take turns.
    for (const [as, code, sub] of [
      ['telegram:7770', 1, 'approve'], // a viewer
      ['telegram:7771', 1, 'reject'], // an operator: deciding needs the approver role
      ['telegram:7771', 1, 'approve'],
      ['telegram:999', 1, 'reject'], // no member at all
      ['email:owner', 1, 'approve'],
      ['owner@example.test', 2, 'reject'], // not a subject
    ] as const) {
      {
        const result = await awooop(
          'approvals',
          sub,
          approval.approvalId,
          '-p',
          PROJECT,
          '--as',
          as,
        );
        expect(result.code, as).toBe(code);
        expect(result.stderr, as).toContain('--as:');
        if (code === 1) expect(result.stderr).toContain(`NOT_APPROVER: --as: ${as} may not decide`);
      }
    }
    expect((await approvalOf(approval.approvalId))?.status).toBe('pending');
    expect((await runOf(run.runId))?.state).toBe('WAITING_APPROVAL');
  });

  // Regression (issue 15, item 7): an operator decided approvals.
  it('refuses --key of an operator key (exit 1, FORBIDDEN naming the approver role) and decides with an approver key as api:<key id>', async () => {
    const { run, approval } = await waitingApproval(pipeline, PROJECT);
    for (const sub of ['approve', 'reject']) {
      const refused = await awooop(
        '--key',
        keys.operator.key,
        'approvals',
        sub,
        approval.approvalId,
        '--project',
        PROJECT,
      );
      expect(refused.code).toBe(1);
      expect(refused.stderr).toContain(
        'FORBIDDEN: this key (operator) may not approvals.decide: it needs the approver or admin role',
      );
    }
    // The operator key still lists them.
    const listed = await awooop('--key', keys.operator.key, 'approvals', 'list', '-p', PROJECT);
    expect(listed.code).toBe(0);
    expect(listed.stdout).toContain(approval.approvalId);
    expect((await approvalOf(approval.approvalId))?.status).toBe('pending');
    expect((await runOf(run.runId))?.state).toBe('WAITING_APPROVAL');

    const withAs = await awooop(
      ...['--key', keys.approver.key, 'approvals', 'approve', approval.approvalId],
      ...['--project', PROJECT, '--as', approver],
    );
    expect(withAs.code).toBe(2);
    expect(withAs.stderr).toContain('--as: not with a key');
    const approved = await awooop(
      ...['--key', keys.approver.key, 'approvals', 'approve', approval.approvalId],
      ...['--project', PROJECT],
    );
    expect(approved.stderr).toBe('');
    expect(approved.code).toBe(0);
    expect((await approvalOf(approval.approvalId))?.decidedBy).toBe(`api:${keys.approver.keyId}`);
    expect((await runOf(run.runId))?.state).toBe('ADMITTED');
  });

  it('names the field of a bad command line (exit 2)', async () => {
    const id = crypto.randomUUID();
    for (const [args, field] of [
      [['approvals', 'list'], '--project'],
      [['approvals', 'approve', id], '--project'],
      [['approvals', 'list', '--project', PROJECT, '--status', 'waiting'], '--status'],
      [['approvals', 'approve', '--project', PROJECT], 'APPROVAL_ID'],
      [['approvals', 'approve', 'nope', '--project', PROJECT], 'APPROVAL_ID'],
      [['approvals', 'approve', id, '--project', PROJECT, '--sha', 'abc'], '--sha'],
      [['approvals', 'list', '--project', 'nosuch'], '--project'],
    ] as const) {
      const result = await awooop(...args);
      expect(result.code, args.join(' ')).toBe(2);
      expect(result.stderr, args.join(' ')).toContain(field);
    }
    const usage = await awooop('approvals');
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain('awooop approvals list --project P');
  });
});
