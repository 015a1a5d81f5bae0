import { requestApproval, type Approval } from '../../db/approvals.ts';
import { getRun, transitionRun, type Run } from '../../db/runs.ts';
import { withProject } from '../../db/withProject.ts';
import { canonicalJson, sha256Hex } from '../../pipeline/contracts/canonicalJson.ts';
import type { RunJob } from '../../pipeline/contracts/runJob.ts';
import { policy } from '../../pipeline/stages/policy.ts';
import { resolve } from '../../pipeline/stages/resolve.ts';
import { telegramUpdate } from '../../ops/fakes/channelPayloads.ts';
import { TEST_SECRETS } from '../../ops/fakes/pipelineTenant.ts';
import type { Pipeline } from './startPipeline.ts';

let nextUpdateId = 700_000;

/**
 * A run paused on an approval, as execute leaves one, made without execute: a Telegram
 * message to the tenant's `tg` account (the harness's workers must be stopped), resolve and
 * policy called directly (so the run is pinned and live, and no stage job is left queued
 * behind it), then `ADMITTED → WAITING_APPROVAL` and a pending approval for one call.
 */
export async function waitingApproval(
  pipeline: Pipeline,
  projectId: string,
  {
    chatId = 4242,
    tool = 'ops.restart_service',
    args = { service: 'billing', reason: 'stuck queue' },
    ttlSeconds = 3600,
  }: {
    chatId?: number;
    tool?: string;
    args?: Record<string, unknown>;
    ttlSeconds?: number;
  } = {},
): Promise<{ run: Run; approval: Approval }> {
  const updateId = nextUpdateId++;
  const res = await fetch(`${pipeline.url}/webhooks/telegram/${projectId}/tg`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'x-telegram-bot-api-secret-token': TEST_SECRETS['tg-webhook'],
    },
    body: JSON.stringify(telegramUpdate({ updateId, chatId, text: 'restart billing please' })),
  });
  if (res.status !== 200) throw new Error(`webhook answered ${res.status}: ${await res.text()}`);
  const runId = ((await res.json()) as { runs: string[] }).runs[0]!;
  const first = await withProject(pipeline.ctx.pool, projectId, (tx) => getRun(tx, runId));
  const job: RunJob = { projectId, runId, traceId: first!.traceId, stage: 'resolve' };
  await resolve(pipeline.ctx, job);
  await policy(pipeline.ctx, { ...job, stage: 'policy' });
  return withProject(pipeline.ctx.pool, projectId, async (tx) => {
    const moved = await transitionRun(tx, {
      runId,
      from: 'ADMITTED',
      to: 'WAITING_APPROVAL',
      stage: 'execute',
      actor: 'test',
      startedAt: Date.now(),
    });
    if (!moved) throw new Error(`run ${runId} did not reach ADMITTED`);
    const approval = await requestApproval(tx, {
      projectId,
      runId,
      traceId: first!.traceId,
      stepIndex: 0,
      callIndex: 0,
      agent: 'helper',
      tool,
      risk: 'write',
      arguments: args,
      callSha256: sha256Hex(canonicalJson({ tool, arguments: args })),
      reasons: ['grant_requires_approval', 'risk_write'],
      ttlSeconds,
    });
    return { run: (await getRun(tx, runId))!, approval };
  });
}
