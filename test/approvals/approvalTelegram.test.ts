import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getApproval, type Approval } from '../../db/approvals.ts';
import { listApprovalNotices, listOutbound } from '../../db/outboundMessages.ts';
import { enqueueOutbound } from '../../db/outboundMessages.ts';
import { getRun, transitionRun, type Run } from '../../db/runs.ts';
import { listStalledRuns } from '../../db/sweeperQueries.ts';
import { withSweeper } from '../../db/withSweeper.ts';
import { describeRun } from '../../pipeline/runs/describeRun.ts';
import { retryRun } from '../../pipeline/runs/retryRun.ts';
import { withProject } from '../../db/withProject.ts';
import { approverRecipients, notifyApprovers } from '../../pipeline/approvals/notifyApprovers.ts';
import { queueApprovalNotices } from '../../pipeline/approvals/queueApprovalNotices.ts';
import { deliver } from '../../pipeline/stages/deliver.ts';
import type { ChannelContract } from '../../pipeline/contracts/channelContract.ts';
import type { ProjectContract } from '../../pipeline/contracts/projectContract.ts';
import { stageJobId } from '../../pipeline/contracts/runState.ts';
import { telegramCallbackQuery } from '../../ops/fakes/channelPayloads.ts';
import { startLineServer } from '../fakes/lineServer.ts';
import { startTelegramServer } from '../../ops/fakes/telegramServer.ts';
import {
  APPROVALS_ACCOUNT,
  setUpTestTenant,
  TEST_SECRETS,
} from '../../ops/fakes/pipelineTenant.ts';
import { startPipeline, type Pipeline } from '../helpers/startPipeline.ts';
import { tableCounts } from '../helpers/tableCounts.ts';
import { useTestDatabase } from '../helpers/testDatabase.ts';
import { runCli } from '../helpers/runCli.ts';
import { TEST_REDIS_URL, useRedisPrefix } from '../helpers/useRedisPrefix.ts';
import { waitingApproval } from '../helpers/waitingApproval.ts';

const db = useTestDatabase();
const prefix = useRedisPrefix();

let telegram: Awaited<ReturnType<typeof startTelegramServer>>;
let line: Awaited<ReturnType<typeof startLineServer>>;
let pipeline: Pipeline;
let owner: pg.Client;
let project: ProjectContract;
let opsChannel: ChannelContract;

const PROJECT = 'acme';
const APPROVERS = ['5551', '5552'];
const VIEWER = '5559';
/** An ACL operator: no approver role, so no say in approvals. */
const OPERATOR = '5558';
let nextUpdateId = 900_000;

beforeAll(async () => {
  telegram = await startTelegramServer({ token: TEST_SECRETS['tg-token'] });
  line = await startLineServer();
  pipeline = await startPipeline({
    pool: db().pool,
    sweeperPool: db().sweeperPool,
    prefix,
    workers: false,
  });
  owner = await db().owner();
  await setUpTestTenant(pipeline, db().pool, {
    projectId: PROJECT,
    telegramApiRoot: telegram.apiRoot,
    lineBaseUrl: line.baseUrl,
    approvers: APPROVERS,
    viewers: [VIEWER],
    operators: [OPERATOR],
  });
  await withProject(db().pool, PROJECT, async (tx) => {
    const read = pipeline.ctx.contracts;
    project = (await read.active(tx, { projectId: PROJECT, kind: 'project', name: 'project' }))!
      .body;
    opsChannel = (await read.active(tx, {
      projectId: PROJECT,
      kind: 'channel',
      name: APPROVALS_ACCOUNT,
    }))!.body;
  });
});

afterAll(async () => {
  await pipeline?.close();
  await Promise.all([telegram?.close(), line?.close()]);
});

/** Posts a button press to an account's webhook, as Telegram does. */
async function press(
  fromId: string,
  data: string,
  {
    account = APPROVALS_ACCOUNT,
    updateId = nextUpdateId++,
    secret = TEST_SECRETS['tg-webhook'],
    callbackQueryId,
  }: { account?: string; updateId?: number; secret?: string; callbackQueryId?: string } = {},
) {
  const res = await fetch(`${pipeline.url}/webhooks/telegram/${PROJECT}/${account}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-telegram-bot-api-secret-token': secret },
    body: JSON.stringify(
      telegramCallbackQuery({
        updateId,
        fromId: Number(fromId),
        data,
        ...(callbackQueryId ? { callbackQueryId } : {}),
      }),
    ),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

const runOf = (runId: string) => withProject(db().pool, PROJECT, (tx) => getRun(tx, runId));
const approvalOf = (id: string) => withProject(db().pool, PROJECT, (tx) => getApproval(tx, id));
const answersTo = (queryId: string) =>
  telegram.callbackAnswers.filter((a) => a.callback_query_id === queryId);

describe('an approval button pressed in Telegram', () => {
  it('decides the approval when an approver presses Approve, answers "Approved" and starts no run', async () => {
    const { run, approval } = await waitingApproval(pipeline, PROJECT);
    const runs = (await tableCounts(owner)).runs;
    const answer = await press(APPROVERS[0]!, `ap:${approval.approvalId}:y`, {
      callbackQueryId: 'q-approve-1',
    });
    expect(answer).toEqual({ status: 200, body: { ok: true, runs: [], approval: 'approved' } });
    expect(await approvalOf(approval.approvalId)).toMatchObject({
      status: 'approved',
      decidedBy: `telegram:${APPROVERS[0]}`,
      decidedVia: 'telegram',
    });
    expect((await runOf(run.runId))?.state).toBe('ADMITTED');
    expect(
      await pipeline.queues.queues.execute.getJob(stageJobId('execute', run.runId)),
    ).toBeDefined();
    expect(answersTo('q-approve-1')).toEqual([
      { token: TEST_SECRETS['tg-token'], callback_query_id: 'q-approve-1', text: 'Approved' },
    ]);
    expect((await tableCounts(owner)).runs).toBe(runs);
  });

  it('rejects on Reject: the run fails with APPROVAL_REJECTED', async () => {
    const { run, approval } = await waitingApproval(pipeline, PROJECT);
    const answer = await press(APPROVERS[1]!, `ap:${approval.approvalId}:n`, {
      callbackQueryId: 'q-reject-1',
    });
    expect(answer.body.approval).toBe('rejected');
    expect(await runOf(run.runId)).toMatchObject({
      state: 'FAILED',
      failureCode: 'APPROVAL_REJECTED',
    });
    expect(answersTo('q-reject-1').map((a) => a.text)).toEqual(['Rejected']);
  });

  it('answers 200 and decides nothing twice for a retried update (same update_id)', async () => {
    const { run, approval } = await waitingApproval(pipeline, PROJECT);
    const spec = { updateId: nextUpdateId++, callbackQueryId: 'q-retried' };
    expect((await press(APPROVERS[0]!, `ap:${approval.approvalId}:y`, spec)).status).toBe(200);
    const counts = await tableCounts(owner);
    const again = await press(APPROVERS[0]!, `ap:${approval.approvalId}:y`, spec);
    expect(again).toEqual({
      status: 200,
      body: { ok: true, runs: [], approval: 'already_decided' },
    });
    expect(await tableCounts(owner)).toEqual(counts);
    expect((await runOf(run.runId))?.state).toBe('ADMITTED');
    // Telegram refuses a second answer to one query; that is logged, not an error.
    expect(answersTo('q-retried').map((a) => a.text)).toEqual(['Approved']);
  });

  it('tells a second approver who decided first', async () => {
    const { approval } = await waitingApproval(pipeline, PROJECT);
    await press(APPROVERS[0]!, `ap:${approval.approvalId}:n`);
    const late = await press(APPROVERS[1]!, `ap:${approval.approvalId}:y`, {
      callbackQueryId: 'q-late',
    });
    expect(late.body.approval).toBe('already_decided');
    expect(answersTo('q-late').map((a) => a.text)).toEqual([
      `Already rejected by telegram:${APPROVERS[0]}`,
    ]);
    expect((await approvalOf(approval.approvalId))?.status).toBe('rejected');
  });

  // Regression (issue 15, item 7): an ACL operator decided approvals (the default approver
  // role was operator); it takes the approver role now.
  it('refuses a non-member and members without the approver role (viewer, operator): "not allowed", nothing changes', async () => {
    const { run, approval } = await waitingApproval(pipeline, PROJECT);
    const counts = await tableCounts(owner);
    for (const [who, queryId] of [
      ['777000111', 'q-stranger'],
      [VIEWER, 'q-viewer'],
      [OPERATOR, 'q-operator'],
    ] as const) {
      const answer = await press(who, `ap:${approval.approvalId}:y`, { callbackQueryId: queryId });
      expect(answer).toEqual({
        status: 200,
        body: { ok: true, runs: [], approval: 'not_allowed' },
      });
      expect(answersTo(queryId).map((a) => a.text)).toEqual([
        'Not allowed: you may not decide approvals here (it needs the approver role)',
      ]);
    }
    expect(await tableCounts(owner)).toEqual(counts);
    expect((await approvalOf(approval.approvalId))?.status).toBe('pending');
    expect((await runOf(run.runId))?.state).toBe('WAITING_APPROVAL');
  });

  it('answers "Expired" for an approval past its expiry and changes nothing', async () => {
    const { run, approval } = await waitingApproval(pipeline, PROJECT);
    await owner.query(
      `UPDATE approvals SET expires_at = now() - interval '1 second' WHERE approval_id = $1`,
      [approval.approvalId],
    );
    const counts = await tableCounts(owner);
    const answer = await press(APPROVERS[0]!, `ap:${approval.approvalId}:y`, {
      callbackQueryId: 'q-expired',
    });
    expect(answer.body.approval).toBe('expired');
    expect(answersTo('q-expired').map((a) => a.text)).toEqual(['Expired']);
    expect(await tableCounts(owner)).toEqual(counts);
    expect((await runOf(run.runId))?.state).toBe('WAITING_APPROVAL');
  });

  it('answers an unknown approval and foreign button data without deciding anything', async () => {
    const counts = await tableCounts(owner);
    const unknown = await press(APPROVERS[0]!, `ap:${crypto.randomUUID()}:y`);
    expect(unknown).toEqual({ status: 200, body: { ok: true, runs: [], approval: 'not_found' } });
    const foreign = await press(APPROVERS[0]!, 'something-else');
    expect(foreign.body.approval).toBe('unknown_action');
    expect(await tableCounts(owner)).toEqual(counts);
  });

  it('keeps the secret-token check: a press without the right token is 401 and decides nothing', async () => {
    const { approval } = await waitingApproval(pipeline, PROJECT);
    const answer = await press(APPROVERS[0]!, `ap:${approval.approvalId}:y`, { secret: 'wrong' });
    expect(answer.status).toBe(401);
    expect((await approvalOf(approval.approvalId))?.status).toBe('pending');
  });

  it('ignores a press on an account without approvals: true (no decision, no run)', async () => {
    const { approval } = await waitingApproval(pipeline, PROJECT);
    const counts = await tableCounts(owner);
    const answer = await press(APPROVERS[0]!, `ap:${approval.approvalId}:y`, { account: 'tg' });
    expect(answer).toEqual({ status: 200, body: { ok: true, runs: [], duplicate: false } });
    expect(await tableCounts(owner)).toEqual(counts);
    expect((await approvalOf(approval.approvalId))?.status).toBe('pending');
  });
});

describe('notifyApprovers', () => {
  async function queued(
    args: Record<string, unknown> = { service: 'billing', token: '[REDACTED]' },
  ): Promise<{ run: Run; approval: Approval }> {
    const paused = await waitingApproval(pipeline, PROJECT, { args });
    await withProject(db().pool, PROJECT, (tx) =>
      queueApprovalNotices(pipeline.ctx, tx, { approval: paused.approval, project }),
    );
    return paused;
  }
  const noticesOf = (approvalId: string) =>
    withProject(db().pool, PROJECT, (tx) => listApprovalNotices(tx, { approvalId }));
  const sentFor = (approvalId: string) => telegram.sent.filter((m) => m.text.includes(approvalId));

  it('finds the approvers: telegram members with the approver role or admin, only with an approvals channel', () => {
    const accounts = { [APPROVALS_ACCOUNT]: opsChannel };
    expect(approverRecipients(project, pipeline.ctx.channels, accounts)).toEqual(APPROVERS);
    expect(approverRecipients(project, pipeline.ctx.channels, {})).toEqual([]);
    // Without an approvals channel nobody is asked.
    expect(
      approverRecipients(
        { ...project, approvals: { approverRole: 'approver' } },
        pipeline.ctx.channels,
        accounts,
      ),
    ).toEqual([]);
    // A revision stored before the approver role says `operator`: read as `approver`, so its
    // operators are not asked.
    expect(
      approverRecipients(
        { ...project, approvals: { ...project.approvals, approverRole: 'operator' } },
        pipeline.ctx.channels,
        accounts,
      ),
    ).toEqual(APPROVERS);
    const admins = {
      ...project,
      approvals: { ...project.approvals, approverRole: 'admin' as const },
      acl: {
        members: [
          ...project.acl.members,
          { subject: 'telegram:6000', roles: ['admin' as const] },
          { subject: 'telegram:6000', roles: ['viewer' as const] },
        ],
      },
    };
    expect(approverRecipients(admins, pipeline.ctx.channels, accounts)).toEqual(['6000']);
  });

  // Regression: without the accounts, the recipients were taken with the subject prefix of
  // every plugin that can ask approvers, so a project with Telegram and Slack approvers sent
  // Telegram-bound notices to Slack user ids on its Telegram approvals account.
  it("asks only the approvers of the approvals account's own channel when the project has telegram: and slack: approvers", async () => {
    const mixed: ProjectContract = {
      ...project,
      acl: {
        members: [
          ...project.acl.members,
          { subject: 'slack:UAPPROVER7', roles: ['approver'] },
          { subject: 'slack:UOPERATOR9', roles: ['operator'] },
          { subject: 'slack:UADMIN8', roles: ['admin'] },
        ],
      },
    };
    expect(
      approverRecipients(mixed, pipeline.ctx.channels, { [APPROVALS_ACCOUNT]: opsChannel }),
    ).toEqual(APPROVERS);
    const slackAccount = { type: 'slack', approvals: true } as unknown as ChannelContract;
    expect(
      approverRecipients(mixed, pipeline.ctx.channels, { [APPROVALS_ACCOUNT]: slackAccount }),
    ).toEqual(['UAPPROVER7', 'UADMIN8']);
    // What execute queues when the call pauses: rows for the Telegram approvers alone.
    const { run, approval } = await waitingApproval(pipeline, PROJECT);
    const queuedCount = await withProject(db().pool, PROJECT, (tx) =>
      queueApprovalNotices(pipeline.ctx, tx, { approval, project: mixed }),
    );
    expect(queuedCount).toBe(2);
    const rows = await noticesOf(approval.approvalId);
    expect(rows.map((r) => r.recipient)).toEqual(APPROVERS);
    await notifyApprovers(pipeline.ctx, { run, approval, project: mixed, channel: opsChannel });
    expect(
      sentFor(approval.approvalId)
        .map((m) => m.chat_id)
        .sort(),
    ).toEqual(APPROVERS);
  });

  it('queues one ledger row per approver with the text and buttons it will send; queueing twice adds none', async () => {
    const { run, approval } = await queued();
    await withProject(db().pool, PROJECT, (tx) =>
      queueApprovalNotices(pipeline.ctx, tx, { approval, project }),
    );
    const rows = await noticesOf(approval.approvalId);
    expect(rows).toHaveLength(2);
    for (const row of rows) {
      expect(row).toMatchObject({
        kind: 'approval',
        runId: run.runId,
        approvalId: approval.approvalId,
        status: 'queued',
        format: 'plain',
        buttons: ['approved', 'rejected'],
      });
      expect(row.text).toContain(`Approval: ${approval.approvalId}`);
    }
    // The run's answer rows are another list: deliver never sees a notice.
    expect(await withProject(db().pool, PROJECT, (tx) => listOutbound(tx, run.runId))).toEqual([]);
  });

  it('sends each approver one message with Approve / Reject buttons; a second call sends nothing more', async () => {
    const { run, approval } = await queued();
    const report = await notifyApprovers(pipeline.ctx, {
      run,
      approval,
      project,
      channel: opsChannel,
    });
    expect(report).toEqual({ sent: 2, uncertain: 0, failed: 0 });
    const sent = sentFor(approval.approvalId);
    expect(sent.map((m) => m.chat_id).sort()).toEqual(APPROVERS);
    for (const message of sent) {
      expect(message.parse_mode).toBeUndefined();
      expect(message.text).toContain('Agent: helper');
      expect(message.text).toContain('Tool: ops.restart_service');
      expect(message.text).toContain('Risk: write');
      expect(message.text).toContain('grant_requires_approval, risk_write');
      expect(message.text).toContain(new Date(approval.expiresAt).toISOString());
      expect(message.text).toContain('"token": "[REDACTED]"');
      expect(message.reply_markup).toEqual({
        inline_keyboard: [
          [
            { text: 'Approve', callback_data: `ap:${approval.approvalId}:y` },
            { text: 'Reject', callback_data: `ap:${approval.approvalId}:n` },
          ],
        ],
      });
      for (const button of (
        message.reply_markup as { inline_keyboard: { callback_data: string }[][] }
      ).inline_keyboard[0]!)
        expect(Buffer.byteLength(button.callback_data)).toBeLessThanOrEqual(64);
    }
    const settled = await noticesOf(approval.approvalId);
    expect(settled.map((n) => [n.status, n.method, n.attempts])).toEqual([
      ['sent', 'askApprover', 1],
      ['sent', 'askApprover', 1],
    ]);
    expect(settled.map((n) => n.externalMessageId).sort()).toEqual(
      sent.map((m) => String(m.message_id)).sort(),
    );
    const { rows } = await owner.query<{ detail: { recipient: string; message_id: string } }>(
      `SELECT detail FROM audit_events WHERE chain = $1 AND action = 'approval.notified' ORDER BY seq`,
      [`run:${run.runId}`],
    );
    expect(rows.map((r) => r.detail.recipient).sort()).toEqual(
      APPROVERS.map((id) => `telegram:${id}`),
    );

    const again = await notifyApprovers(pipeline.ctx, { run, approval, project });
    expect(again).toEqual({ sent: 0, uncertain: 0, failed: 0 });
    expect(sentFor(approval.approvalId)).toHaveLength(2);
  });

  it('offers only Reject when the arguments had to be cut, and says where to read them', async () => {
    const { run, approval } = await queued({ script: 'x'.repeat(5000) });
    await notifyApprovers(pipeline.ctx, { run, approval, project, channel: opsChannel });
    const message = sentFor(approval.approvalId)[0]!;
    expect(message.text).toContain('… (cut: read them in full with');
    expect(message.reply_markup).toEqual({
      inline_keyboard: [[{ text: 'Reject', callback_data: `ap:${approval.approvalId}:n` }]],
    });
    // A client can send any button data: an Approve press for it is refused all the same.
    const answer = await press(message.chat_id, `ap:${approval.approvalId}:y`);
    expect(answer.body.approval).toBe('not_allowed');
    expect((await runOf(run.runId))?.state).toBe('WAITING_APPROVAL');
  });

  it('a press on the sent button decides it', async () => {
    const { run, approval } = await queued();
    await notifyApprovers(pipeline.ctx, { run, approval, project, channel: opsChannel });
    const message = sentFor(approval.approvalId)[0]!;
    const button = (message.reply_markup as { inline_keyboard: { callback_data: string }[][] })
      .inline_keyboard[0]![0]!;
    const answer = await press(message.chat_id, button.callback_data);
    expect(answer.body.approval).toBe('approved');
    expect((await runOf(run.runId))?.state).toBe('ADMITTED');
  });

  it('puts a notice back to queued on a 5xx and throws; the retry sends it once', async () => {
    const { run, approval } = await queued();
    telegram.failNext(1, { status: 500, method: 'sendMessage' });
    await expect(
      notifyApprovers(pipeline.ctx, { run, approval, project, channel: opsChannel }),
    ).rejects.toMatchObject({ code: 'CHANNEL_UNAVAILABLE' });
    expect((await noticesOf(approval.approvalId)).map((n) => n.status)).toEqual([
      'queued',
      'queued',
    ]);
    const retry = await notifyApprovers(pipeline.ctx, {
      run,
      approval,
      project,
      channel: opsChannel,
    });
    expect(retry.sent).toBe(2);
    expect(sentFor(approval.approvalId)).toHaveLength(2);
  });

  it('settles a refused notice failed, goes on with the others and leaves the run waiting', async () => {
    const { run, approval } = await queued();
    telegram.failNext(1, { status: 403, method: 'sendMessage' });
    const report = await notifyApprovers(pipeline.ctx, {
      run,
      approval,
      project,
      channel: opsChannel,
    });
    expect(report).toEqual({ sent: 1, uncertain: 0, failed: 1 });
    expect((await noticesOf(approval.approvalId)).map((n) => n.status).sort()).toEqual([
      'failed',
      'sent',
    ]);
    expect((await runOf(run.runId))?.state).toBe('WAITING_APPROVAL');
  });

  it('settles a notice whose answer was lost uncertain and never sends it again', async () => {
    const { run, approval } = await queued();
    telegram.failNext(1, { status: 200, method: 'sendMessage', delivered: true, hangUp: true });
    const report = await notifyApprovers(pipeline.ctx, {
      run,
      approval,
      project,
      channel: opsChannel,
    });
    expect(report).toEqual({ sent: 1, uncertain: 1, failed: 0 });
    await notifyApprovers(pipeline.ctx, { run, approval, project, channel: opsChannel });
    expect(sentFor(approval.approvalId)).toHaveLength(2);
  });

  it('sends nothing for a decided approval, or without an approvals channel', async () => {
    const first = await queued();
    const decided = { ...first.approval, status: 'approved' as const };
    expect(
      await notifyApprovers(pipeline.ctx, {
        ...first,
        approval: decided,
        project,
        channel: opsChannel,
      }),
    ).toEqual({ sent: 0, uncertain: 0, failed: 2 });
    const second = await queued();
    expect(await notifyApprovers(pipeline.ctx, { ...second, project, channel: null })).toEqual({
      sent: 0,
      uncertain: 0,
      failed: 2,
    });
    expect(sentFor(first.approval.approvalId)).toHaveLength(0);
    expect(sentFor(second.approval.approvalId)).toHaveLength(0);
    expect((await noticesOf(second.approval.approvalId))[0]).toMatchObject({ status: 'failed' });
  });

  it('settles the notices still queued when the approval is decided, and sends them no more', async () => {
    const { run, approval } = await queued();
    telegram.failNext(1, { status: 500, method: 'sendMessage' });
    await expect(
      notifyApprovers(pipeline.ctx, { run, approval, project, channel: opsChannel }),
    ).rejects.toMatchObject({ code: 'CHANNEL_UNAVAILABLE' });
    expect((await press(APPROVERS[0]!, `ap:${approval.approvalId}:y`)).body.approval).toBe(
      'approved',
    );
    expect((await noticesOf(approval.approvalId)).map((n) => [n.status, n.errorCode])).toEqual([
      ['failed', 'APPROVAL_APPROVED'],
      ['failed', 'APPROVAL_APPROVED'],
    ]);
    const decided = (await approvalOf(approval.approvalId))!;
    expect(
      await notifyApprovers(pipeline.ctx, { run, approval: decided, project, channel: opsChannel }),
    ).toEqual({ sent: 0, uncertain: 0, failed: 0 });
    expect(sentFor(approval.approvalId)).toHaveLength(0);
  });

  it('is found by the sweeper while a notice is left unsent, and not once it is sent', async () => {
    const { run, approval } = await queued();
    const stalled = async () =>
      (
        await withSweeper(db().sweeperPool, (tx) =>
          listStalledRuns(tx, {
            stallMs: 60_000,
            after: '00000000-0000-0000-0000-000000000000',
            limit: 1000,
          }),
        )
      ).filter((r) => r.runId === run.runId);
    const age = () =>
      owner.query(
        `UPDATE outbound_messages SET updated_at = now() - interval '2 minutes' WHERE approval_id = $1`,
        [approval.approvalId],
      );
    expect(await stalled()).toEqual([]);
    await age();
    expect(await stalled()).toMatchObject([{ runId: run.runId, state: 'WAITING_APPROVAL' }]);
    const report = await pipeline.sweep(60_000);
    expect(report.requeued).toBeGreaterThanOrEqual(1);
    expect(
      await pipeline.queues.queues.execute.getJob(stageJobId('execute', run.runId)),
    ).toBeDefined();
    await notifyApprovers(pipeline.ctx, { run, approval, project, channel: opsChannel });
    await age();
    expect(await stalled()).toEqual([]);
    await pipeline.queues.queues.execute.remove(stageJobId('execute', run.runId));
  });

  it('stays out of the answer: deliver and a retry of the run neither resend nor requeue the notices', async () => {
    const { run, approval } = await queued();
    // One notice refused, one sent: a retry requeues refused answer rows, never these.
    telegram.failNext(1, { status: 403, method: 'sendMessage' });
    expect(
      await notifyApprovers(pipeline.ctx, { run, approval, project, channel: opsChannel }),
    ).toEqual({ sent: 1, uncertain: 0, failed: 1 });
    const asked = sentFor(approval.approvalId)[0]!;
    expect((await press(asked.chat_id, `ap:${approval.approvalId}:y`)).body.approval).toBe(
      'approved',
    );
    const before = await noticesOf(approval.approvalId);
    // The resumed run answers (as execute and sanitize would leave it).
    const answer = `The answer for ${run.runId}.`;
    await withProject(db().pool, PROJECT, async (tx) => {
      for (const [from, to] of [
        ['ADMITTED', 'EXECUTED'],
        ['EXECUTED', 'SANITIZED'],
      ] as const)
        await transitionRun(tx, {
          runId: run.runId,
          from,
          to,
          stage: to === 'EXECUTED' ? 'execute' : 'sanitize',
          actor: 'test',
          startedAt: Date.now(),
        });
      await enqueueOutbound(tx, run, 'reply', [answer], { format: 'plain', suppressed: false });
    });
    const job = {
      projectId: PROJECT,
      runId: run.runId,
      traceId: run.traceId,
      stage: 'deliver',
    } as const;
    telegram.failNext(1, { status: 403, method: 'sendMessage' });
    await deliver(pipeline.ctx, job);
    expect((await runOf(run.runId))?.state).toBe('FAILED');
    const retried = await retryRun(
      {
        pool: db().pool,
        logger: pipeline.ctx.logger,
        actor: 'test',
        enqueue: pipeline.queues.enqueue,
        clearJob: async () => 'none',
      },
      { projectId: PROJECT, runId: run.runId },
    );
    expect(retried.requeued).toBe(1);
    await pipeline.queues.queues.deliver.remove(stageJobId('deliver', run.runId));
    await deliver(pipeline.ctx, job);
    expect((await runOf(run.runId))?.state).toBe('COMPLETED');
    expect(telegram.sent.filter((m) => m.text === answer)).toHaveLength(1);
    expect(sentFor(approval.approvalId)).toHaveLength(1);
    expect(await noticesOf(approval.approvalId)).toEqual(before);
    // The run's record lists the notices by kind, each with its approval and recipient.
    const view = await describeRun(db().pool, PROJECT, run.runId);
    expect(
      view.outbound.map((o) => [o.kind, o.status, 'recipient' in o ? o.recipient : null]),
    ).toEqual([
      ['reply', 'sent', null],
      ['failure', 'suppressed', null],
      ...before.map((n) => ['approval', n.status, n.recipient]),
    ]);
    const shown = await runCli(['runs', 'show', run.runId, '--project', PROJECT], {
      DATABASE_URL: db().url,
      REDIS_URL: TEST_REDIS_URL,
      AWOOOP_REDIS_PREFIX: prefix,
    });
    expect(shown.stdout).toContain('  reply #0  sent via sendMessage  attempts 2');
    for (const n of before)
      expect(shown.stdout).toContain(
        `  approval ${approval.approvalId} to ${n.recipient}  ${n.status}${n.method ? ` via ${n.method}` : ''}  attempts ${n.attempts}`,
      );
  });
});
