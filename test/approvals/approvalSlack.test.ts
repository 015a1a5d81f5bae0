import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listApprovalNotices } from '../../db/outboundMessages.ts';
import { withProject } from '../../db/withProject.ts';
import { notifyApprovers } from '../../pipeline/approvals/notifyApprovers.ts';
import { queueApprovalNotices } from '../../pipeline/approvals/queueApprovalNotices.ts';
import { takeChannelStats } from '../../pipeline/channels/manager/channelStats.ts';
import { slackPlugin } from '../../pipeline/channels/slack/slackPlugin.ts';
import type { ProjectContract } from '../../pipeline/contracts/projectContract.ts';
import { ChannelContract } from '../../pipeline/contracts/channelContract.ts';
import { applyTestTenant, pipelineTenant, TEST_SECRETS } from '../../ops/fakes/pipelineTenant.ts';
import { startTelegramServer } from '../../ops/fakes/telegramServer.ts';
import { startLineServer } from '../fakes/lineServer.ts';
import { slackButtonPress, slackHeaders } from '../../ops/fakes/slackPayloads.ts';
import { startSlackServer, type SlackServer } from '../../ops/fakes/slackServer.ts';
import { startPipeline, type Pipeline } from '../helpers/startPipeline.ts';
import { tableCounts } from '../helpers/tableCounts.ts';
import { useTestDatabase } from '../helpers/testDatabase.ts';
import { useRedisPrefix } from '../helpers/useRedisPrefix.ts';
import { waitingApproval } from '../helpers/waitingApproval.ts';

// Approvals answered with Slack Block Kit buttons on the signed interactivity endpoint.
const db = useTestDatabase();
const prefix = useRedisPrefix();
const PROJECT = 'slackapprove';
const APPROVER = 'UAPPROVER1';
const STRANGER = 'USTRANGER9';
/** An ACL operator of the project: no approver role. */
const OPERATOR = 'UOPERATOR2';
const SIGNING_SECRET = 'slack-signing-secret-approvals-0123';
const BOT_TOKEN = 'xoxb-2222222222-3333333333-ApprovalsBotTokenXyz';

let telegram: Awaited<ReturnType<typeof startTelegramServer>>;
let line: Awaited<ReturnType<typeof startLineServer>>;
let slack: SlackServer;
let pipeline: Pipeline;
let owner: pg.Client;
let account: Extract<ChannelContract, { type: 'slack' }>;
let project: ProjectContract;

beforeAll(async () => {
  telegram = await startTelegramServer();
  line = await startLineServer();
  slack = await startSlackServer({ token: BOT_TOKEN });
  pipeline = await startPipeline({ pool: db().pool, prefix, workers: false });
  owner = await db().owner();
  const input = pipelineTenant({
    projectId: PROJECT,
    telegramApiRoot: telegram.apiRoot,
    lineBaseUrl: line.baseUrl,
  });
  account = ChannelContract.parse({
    type: 'slack',
    signingSecret: 'secret:slack-signing',
    botToken: 'secret:slack-bot',
    apiBaseUrl: slack.apiBaseUrl,
    approvals: true,
  }) as typeof account;
  input.tenant.channels.sl = account;
  input.tenant.project.acl.members.push(
    { subject: `slack:${APPROVER}`, roles: ['approver'] },
    { subject: `slack:${OPERATOR}`, roles: ['operator'] },
    // An approver on Telegram as well: never asked on the Slack account.
    { subject: 'telegram:5553', roles: ['approver'] },
  );
  input.tenant.project.approvals = { ...input.tenant.project.approvals, channel: 'sl' };
  project = input.tenant.project;
  await applyTestTenant({ pool: db().pool, logger: pipeline.ctx.logger }, input);
  for (const [name, value] of Object.entries(TEST_SECRETS))
    await pipeline.setSecret(PROJECT, name, value);
  await pipeline.setSecret(PROJECT, 'slack-signing', SIGNING_SECRET);
  await pipeline.setSecret(PROJECT, 'slack-bot', BOT_TOKEN);
});

afterAll(async () => {
  await pipeline?.close();
  await Promise.all([telegram?.close(), line?.close(), slack?.close()]);
});

async function press(userId: string, value: string, secret = SIGNING_SECRET) {
  const body = slackButtonPress({ userId, value });
  // Slack's Interactivity Request URL is the Events API one: the form body tells them apart.
  const res = await fetch(`${pipeline.url}/webhooks/slack/${PROJECT}/sl`, {
    method: 'POST',
    headers: { ...slackHeaders(body, secret), 'content-type': 'application/x-www-form-urlencoded' },
    body,
  });
  return { status: res.status, body: (await res.json()) as { approval?: string } };
}
async function stateOf(runId: string, approvalId: string) {
  const run = await owner.query<{ state: string }>('SELECT state FROM runs WHERE run_id = $1', [
    runId,
  ]);
  const approval = await owner.query<{ status: string; decided_via: string | null }>(
    'SELECT status, decided_via FROM approvals WHERE approval_id = $1',
    [approvalId],
  );
  return { run: run.rows[0]?.state, approval: approval.rows[0] };
}

describe('Slack approval buttons', () => {
  it('asks an approver with Block Kit buttons whose values name the approval', async () => {
    const sender = slackPlugin.createSender(account, [BOT_TOKEN]);
    const approvalId = '0b7c9a52-1111-4222-8333-444455556666';
    await sender.askApprover!(APPROVER, {
      approvalId,
      text: 'Approval needed <!channel> & more',
      buttons: ['approved', 'rejected'],
    });
    const post = slack.posts.at(-1)!;
    expect(post.channel).toBe(APPROVER);
    expect(post.text).toBe('Approval needed &lt;!channel&gt; &amp; more');
    expect(post.blocks).toMatchObject([
      { type: 'section', text: { type: 'plain_text', text: 'Approval needed <!channel> & more' } },
      {
        type: 'actions',
        elements: [
          { type: 'button', value: `ap:${approvalId}:y`, style: 'primary' },
          { type: 'button', value: `ap:${approvalId}:n`, style: 'danger' },
        ],
      },
    ]);
  });

  it('tells an owner a budget alert by DM, with no buttons and nothing in it markup', async () => {
    const sender = slackPlugin.createSender(account, [BOT_TOKEN]);
    await sender.tellMember!(APPROVER, 'Budget alert <!channel> & more');
    const post = slack.posts.at(-1)!;
    expect(post.channel).toBe(APPROVER);
    expect(post.text).toBe('Budget alert &lt;!channel&gt; &amp; more');
    expect(post.blocks).toBeUndefined();
  });

  it('changes nothing when someone outside the approver ACL presses Approve', async () => {
    const { run, approval } = await waitingApproval(pipeline, PROJECT);
    const counts = await tableCounts(owner);
    const answer = await press(STRANGER, `ap:${approval.approvalId}:y`);
    expect(answer).toEqual({ status: 200, body: { ok: true, runs: [], approval: 'not_allowed' } });
    expect(await tableCounts(owner)).toEqual(counts);
    expect(await stateOf(run.runId, approval.approvalId)).toEqual({
      run: 'WAITING_APPROVAL',
      approval: { status: 'pending', decided_via: null },
    });
  });

  // Regression (issue 15, item 7): an ACL operator decided approvals.
  it('changes nothing when an ACL operator without the approver role presses Approve or Reject', async () => {
    const { run, approval } = await waitingApproval(pipeline, PROJECT);
    const counts = await tableCounts(owner);
    for (const choice of ['y', 'n']) {
      const answer = await press(OPERATOR, `ap:${approval.approvalId}:${choice}`);
      expect(answer).toEqual({
        status: 200,
        body: { ok: true, runs: [], approval: 'not_allowed' },
      });
    }
    expect(await tableCounts(owner)).toEqual(counts);
    expect(await stateOf(run.runId, approval.approvalId)).toEqual({
      run: 'WAITING_APPROVAL',
      approval: { status: 'pending', decided_via: null },
    });
  });

  it('refuses a press with a bad signature with 401 and changes nothing', async () => {
    const { run, approval } = await waitingApproval(pipeline, PROJECT);
    const counts = await tableCounts(owner);
    const answer = await press(APPROVER, `ap:${approval.approvalId}:y`, 'forged-secret');
    expect(answer.status).toBe(401);
    expect(await tableCounts(owner)).toEqual(counts);
    expect((await stateOf(run.runId, approval.approvalId)).approval?.status).toBe('pending');
  });

  it("an approver's press decides it via slack, and a second press changes nothing", async () => {
    const { run, approval } = await waitingApproval(pipeline, PROJECT);
    expect((await press(APPROVER, `ap:${approval.approvalId}:y`)).body.approval).toBe('approved');
    expect(await stateOf(run.runId, approval.approvalId)).toEqual({
      run: 'ADMITTED',
      approval: { status: 'approved', decided_via: 'slack' },
    });
    const counts = await tableCounts(owner);
    expect((await press(APPROVER, `ap:${approval.approvalId}:n`)).body.approval).toBe(
      'already_decided',
    );
    expect(await tableCounts(owner)).toEqual(counts);
  });

  it('sends the prompt to each Slack approver by DM, and a press on its button decides it', async () => {
    const { run, approval } = await waitingApproval(pipeline, PROJECT);
    // The project has Telegram approvers too: only the Slack one is asked on the Slack account.
    expect(project.acl.members.some((m) => m.subject.startsWith('telegram:'))).toBe(true);
    await withProject(db().pool, PROJECT, (tx) =>
      queueApprovalNotices(pipeline.ctx, tx, { approval, project }),
    );
    const rows = await withProject(db().pool, PROJECT, (tx) =>
      listApprovalNotices(tx, { approvalId: approval.approvalId }),
    );
    expect(rows.map((r) => [r.recipient, r.status])).toEqual([[APPROVER, 'queued']]);
    const report = await notifyApprovers(pipeline.ctx, {
      run,
      approval,
      project,
      channel: account,
    });
    expect(report).toEqual({ sent: 1, uncertain: 0, failed: 0 });
    const prompt = slack.posts.filter((p) => p.text.includes(approval.approvalId));
    expect(prompt.map((p) => p.channel)).toEqual([APPROVER]);
    expect(
      (
        await withProject(db().pool, PROJECT, (tx) =>
          listApprovalNotices(tx, { approvalId: approval.approvalId }),
        )
      ).map((r) => [r.status, r.method]),
    ).toEqual([['sent', 'askApprover']]);
    // The notice counts as a message the approvals account sent, as an answer does.
    const stats = await takeChannelStats(pipeline.ctx.redis, pipeline.ctx.redisPrefix, {
      projectId: PROJECT,
      accountId: 'sl',
    });
    expect(stats?.outbound).toBe(1);
    const buttons = (prompt[0]!.blocks as { elements?: { value: string }[] }[])[1]!.elements!;
    expect((await press(APPROVER, buttons[0]!.value)).body.approval).toBe('approved');
    expect(await stateOf(run.runId, approval.approvalId)).toEqual({
      run: 'ADMITTED',
      approval: { status: 'approved', decided_via: 'slack' },
    });
  });
});
