import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getApproval } from '../../db/approvals.ts';
import { getRun } from '../../db/runs.ts';
import { withProject } from '../../db/withProject.ts';
import { stageJobId } from '../../pipeline/contracts/runState.ts';
import { startLineServer } from '../fakes/lineServer.ts';
import { startTelegramServer } from '../../ops/fakes/telegramServer.ts';
import { setUpTestTenant } from '../../ops/fakes/pipelineTenant.ts';
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
/** An approver of the test tenant (ACL `telegram:5551`, role operator). */
const approver = 'telegram:5551';

beforeAll(async () => {
  telegram = await startTelegramServer();
  line = await startLineServer();
  pipeline = await startPipeline({ pool: db().pool, prefix, workers: false });
  await setUpTestTenant(pipeline, db().pool, {
    projectId: PROJECT,
    telegramApiRoot: telegram.apiRoot,
    lineBaseUrl: line.baseUrl,
    approvers: ['5551'],
    viewers: ['7770'],
  });
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
    for (const [as, code] of [
      ['telegram:7770', 1], // a viewer
      ['telegram:999', 1], // no member at all
      ['email:owner', 1],
      ['owner@example.test', 2], // not a subject
    ] as const) {
      for (const sub of ['approve', 'reject']) {
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
