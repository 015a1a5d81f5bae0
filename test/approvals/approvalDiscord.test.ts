import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queueApprovalNotices } from '../../pipeline/approvals/queueApprovalNotices.ts';
import { withProject } from '../../db/withProject.ts';
import { notifyApprovers } from '../../pipeline/approvals/notifyApprovers.ts';
import { discordPlugin } from '../../pipeline/channels/discord/discordPlugin.ts';
import type { ProjectContract } from '../../pipeline/contracts/projectContract.ts';
import { ChannelContract } from '../../pipeline/contracts/channelContract.ts';
import { applyTestTenant, pipelineTenant, TEST_SECRETS } from '../../ops/fakes/pipelineTenant.ts';
import { startTelegramServer } from '../../ops/fakes/telegramServer.ts';
import { startLineServer } from '../fakes/lineServer.ts';
import {
  buttonPress,
  DISCORD_APP_ID,
  discordHeaders,
  discordKeyPair,
} from '../../ops/fakes/discordPayloads.ts';
import {
  startDiscordRestServer,
  type DiscordRestServer,
} from '../../ops/fakes/discordRestServer.ts';
import { startPipeline, type Pipeline } from '../helpers/startPipeline.ts';
import { tableCounts } from '../helpers/tableCounts.ts';
import { useTestDatabase } from '../helpers/testDatabase.ts';
import { useRedisPrefix } from '../helpers/useRedisPrefix.ts';
import { waitFor } from '../helpers/waitFor.ts';
import { waitingApproval } from '../helpers/waitingApproval.ts';
import { NOT_ALLOWED } from '../../pipeline/approvals/decideFromChannel.ts';

// Approvals answered with Discord buttons on the signed Interactions endpoint.
const db = useTestDatabase();
const prefix = useRedisPrefix();
const PROJECT = 'discordapprove';
const APPROVER = '1400000000000000005';
const STRANGER = '1400000000000000666';
/** An ACL operator of the project: no approver role. */
const OPERATOR = '1400000000000000777';
const TOKEN = 'MTEwMDAwMDAwMDAwMDAwMDAwMQ.GhZxyz.discord-approvals-token-0123456789';
const keys = discordKeyPair();

let telegram: Awaited<ReturnType<typeof startTelegramServer>>;
let line: Awaited<ReturnType<typeof startLineServer>>;
let rest: DiscordRestServer;
let pipeline: Pipeline;
let owner: pg.Client;
let account: Extract<ChannelContract, { type: 'discord' }>;
let project: ProjectContract;

beforeAll(async () => {
  telegram = await startTelegramServer();
  line = await startLineServer();
  rest = await startDiscordRestServer({ token: TOKEN });
  pipeline = await startPipeline({ pool: db().pool, prefix, workers: false });
  owner = await db().owner();
  const input = pipelineTenant({
    projectId: PROJECT,
    telegramApiRoot: telegram.apiRoot,
    lineBaseUrl: line.baseUrl,
  });
  account = ChannelContract.parse({
    type: 'discord',
    botToken: 'secret:discord-bot',
    applicationId: DISCORD_APP_ID,
    publicKey: keys.publicKey,
    apiBaseUrl: rest.apiBaseUrl,
    approvals: true,
  }) as typeof account;
  input.tenant.channels.dc = account;
  input.tenant.project.acl.members.push(
    { subject: `discord:${APPROVER}`, roles: ['approver'] },
    { subject: `discord:${OPERATOR}`, roles: ['operator'] },
  );
  input.tenant.project.approvals = { ...input.tenant.project.approvals, channel: 'dc' };
  project = input.tenant.project;
  await applyTestTenant({ pool: db().pool, logger: pipeline.ctx.logger }, input);
  for (const [name, value] of Object.entries(TEST_SECRETS))
    await pipeline.setSecret(PROJECT, name, value);
  await pipeline.setSecret(PROJECT, 'discord-bot', TOKEN);
});

afterAll(async () => {
  await pipeline?.close();
  await Promise.all([telegram?.close(), line?.close(), rest?.close()]);
});

async function press(userId: string, customId: string, privateKey = keys.privateKey) {
  const body = JSON.stringify(buttonPress({ userId, customId }));
  const res = await fetch(`${pipeline.url}/webhooks/discord/${PROJECT}/dc`, {
    method: 'POST',
    headers: discordHeaders(body, privateKey),
    body,
  });
  return { status: res.status, body: await res.json() };
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
/** The acknowledgement posted under the prompt (best effort, so it is waited for). */
const acknowledged = (text: string) =>
  waitFor(() => rest.posts.find((p) => p.body.content === text), { what: `"${text}" posted` });

describe('Discord approval buttons', () => {
  it('asks an approver in a DM with buttons whose custom_id names the approval', async () => {
    const sender = discordPlugin.createSender(account, [TOKEN]);
    const approvalId = '0b7c9a52-1111-4222-8333-444455556666';
    await sender.askApprover!(APPROVER, {
      approvalId,
      text: 'Approval needed @everyone ``` **x**',
      buttons: ['approved', 'rejected'],
    });
    const dm = rest.dms.get(APPROVER)!;
    const post = rest.posts.at(-1)!;
    expect(post.channelId).toBe(dm);
    expect(post.body).toMatchObject({
      allowed_mentions: { parse: [] },
      embeds: [{ description: '```\nApproval needed @everyone `\u200b`\u200b` **x**\n```' }],
      components: [
        {
          type: 1,
          components: [
            { type: 2, style: 3, label: 'Approve', custom_id: `ap:${approvalId}:y` },
            { type: 2, style: 4, label: 'Reject', custom_id: `ap:${approvalId}:n` },
          ],
        },
      ],
    });
  });

  it('tells an owner a budget alert in a DM, with no buttons and nothing in it markup', async () => {
    const sender = discordPlugin.createSender(account, [TOKEN]);
    await sender.tellMember!(APPROVER, 'Budget alert @everyone **x**');
    const post = rest.posts.at(-1)!;
    expect(post.channelId).toBe(rest.dms.get(APPROVER));
    expect(post.body).toMatchObject({ allowed_mentions: { parse: [] } });
    expect(post.body.components ?? []).toEqual([]);
    expect(String(post.body.content)).toContain('Budget alert');
    expect(String(post.body.content)).not.toContain('**x**');
  });

  it('changes nothing when someone outside the approver ACL presses Approve', async () => {
    const { run, approval } = await waitingApproval(pipeline, PROJECT);
    const counts = await tableCounts(owner);
    const answer = await press(STRANGER, `ap:${approval.approvalId}:y`);
    expect(answer).toEqual({ status: 200, body: { type: 6 } });
    expect(await tableCounts(owner)).toEqual(counts);
    expect(await stateOf(run.runId, approval.approvalId)).toEqual({
      run: 'WAITING_APPROVAL',
      approval: { status: 'pending', decided_via: null },
    });
    await acknowledged(NOT_ALLOWED);
  });

  // Regression (issue 15, item 7): an ACL operator decided approvals.
  it('changes nothing when an ACL operator without the approver role presses Approve or Reject', async () => {
    const { run, approval } = await waitingApproval(pipeline, PROJECT);
    const counts = await tableCounts(owner);
    for (const choice of ['y', 'n']) {
      const answer = await press(OPERATOR, `ap:${approval.approvalId}:${choice}`);
      expect(answer).toEqual({ status: 200, body: { type: 6 } });
      await acknowledged(NOT_ALLOWED);
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
    const answer = await press(
      APPROVER,
      `ap:${approval.approvalId}:y`,
      discordKeyPair().privateKey,
    );
    expect(answer.status).toBe(401);
    expect(await tableCounts(owner)).toEqual(counts);
    expect((await stateOf(run.runId, approval.approvalId)).approval?.status).toBe('pending');
  });

  it("an approver's press decides it via discord once, and a second press changes nothing", async () => {
    const { run, approval } = await waitingApproval(pipeline, PROJECT);
    expect(await press(APPROVER, `ap:${approval.approvalId}:y`)).toEqual({
      status: 200,
      body: { type: 6 },
    });
    expect(await stateOf(run.runId, approval.approvalId)).toEqual({
      run: 'ADMITTED',
      approval: { status: 'approved', decided_via: 'discord' },
    });
    const counts = await tableCounts(owner);
    await press(APPROVER, `ap:${approval.approvalId}:n`);
    expect(await tableCounts(owner)).toEqual(counts);
    expect((await stateOf(run.runId, approval.approvalId)).approval?.status).toBe('approved');
    await acknowledged(`Already approved by discord:${APPROVER}`);
  });

  it('sends the prompt to each Discord approver by DM, and a press on its button decides it', async () => {
    const { run, approval } = await waitingApproval(pipeline, PROJECT);
    await withProject(db().pool, PROJECT, (tx) =>
      queueApprovalNotices(pipeline.ctx, tx, { approval, project }),
    );
    const report = await notifyApprovers(pipeline.ctx, {
      run,
      approval,
      project,
      channel: account,
    });
    expect(report).toEqual({ sent: 1, uncertain: 0, failed: 0 });
    const prompt = rest.posts.filter((p) =>
      JSON.stringify(p.body.embeds ?? []).includes(approval.approvalId),
    );
    expect(prompt.map((p) => p.channelId)).toEqual([rest.dms.get(APPROVER)]);
    const row = (prompt[0]!.body.components as { components: { custom_id: string }[] }[])[0]!;
    expect((await press(APPROVER, row.components[0]!.custom_id)).status).toBe(200);
    expect(await stateOf(run.runId, approval.approvalId)).toEqual({
      run: 'ADMITTED',
      approval: { status: 'approved', decided_via: 'discord' },
    });
  });
});
