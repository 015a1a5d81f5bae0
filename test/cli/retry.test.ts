import { randomUUID } from 'node:crypto';
import { userInfo } from 'node:os';
import type pg from 'pg';
import { UnrecoverableError, Worker, type Job, type Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decideApproval } from '../../pipeline/approvals/decideApproval.ts';
import { stageJobId } from '../../pipeline/contracts/runState.ts';
import { telegramUpdate } from '../../ops/fakes/channelPayloads.ts';
import { startLineServer } from '../fakes/lineServer.ts';
import { startModelServer } from '../fakes/modelServer.ts';
import { startTelegramServer } from '../../ops/fakes/telegramServer.ts';
import { setUpTestTenant, TEST_SECRETS } from '../../ops/fakes/pipelineTenant.ts';
import { runCli } from '../helpers/runCli.ts';
import { startPipeline, type Pipeline } from '../helpers/startPipeline.ts';
import { useTestDatabase } from '../helpers/testDatabase.ts';
import { TEST_REDIS_URL, useRedisPrefix } from '../helpers/useRedisPrefix.ts';
import { waitFor } from '../helpers/waitFor.ts';
import { waitingApproval } from '../helpers/waitingApproval.ts';

// `awooop jobs` and `awooop runs retry` against a real pipeline, its queues and its ledger.
const db = useTestDatabase();
const prefix = useRedisPrefix();
const PROJECT = 'retry';
const NOTICE = 'Sorry, I could not finish that. The team has been told.';

let telegram: Awaited<ReturnType<typeof startTelegramServer>>;
let line: Awaited<ReturnType<typeof startLineServer>>;
let model: Awaited<ReturnType<typeof startModelServer>>;
let pipeline: Pipeline;
let owner: pg.Client;
let nextUpdateId = 40_000;

const awooop = (...args: string[]) =>
  runCli(args, { DATABASE_URL: db().url, REDIS_URL: TEST_REDIS_URL, AWOOOP_REDIS_PREFIX: prefix });

beforeAll(async () => {
  telegram = await startTelegramServer();
  line = await startLineServer();
  model = await startModelServer();
  pipeline = await startPipeline({ pool: db().pool, prefix });
  owner = await db().owner();
  await setUpTestTenant(pipeline, db().pool, {
    projectId: PROJECT,
    telegramApiRoot: telegram.apiRoot,
    lineBaseUrl: line.baseUrl,
    modelBaseUrl: model.url,
  });
});

afterAll(async () => {
  await pipeline?.close();
  await Promise.all([telegram?.close(), line?.close(), model?.close()]);
});

async function post(chatId: number, text: string) {
  const res = await fetch(`${pipeline.url}/webhooks/telegram/${PROJECT}/tg`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'x-telegram-bot-api-secret-token': TEST_SECRETS['tg-webhook'],
    },
    body: JSON.stringify(telegramUpdate({ updateId: nextUpdateId++, chatId, text })),
  });
  expect(res.status).toBe(200);
}

type RunRow = { run_id: string; trace_id: string; state: string; failure_code: string | null };
async function runOf(text: string): Promise<RunRow | undefined> {
  const { rows } = await owner.query<RunRow>(
    `SELECT r.run_id, r.trace_id, r.state, r.failure_code FROM runs r
       JOIN conversation_events e ON e.event_id = r.event_id
      WHERE e.body->'message'->>'text' = $1`,
    [text],
  );
  return rows[0];
}
const settled = (text: string, state: 'COMPLETED' | 'FAILED', timeoutMs = 120_000) =>
  waitFor(
    async () => {
      const run = await runOf(text);
      return run?.state === state ? run : undefined;
    },
    { what: `the run of "${text}" to be ${state}`, timeoutMs, intervalMs: 200 },
  );
type LedgerRow = {
  message_id: string;
  kind: string;
  chunk_index: number;
  status: string;
  error_code: string | null;
  attempts: number;
};
async function ledger(runId: string): Promise<LedgerRow[]> {
  const { rows } = await owner.query<LedgerRow>(
    `SELECT message_id, kind, chunk_index, status, error_code, attempts FROM outbound_messages
      WHERE run_id = $1 AND kind <> 'status' ORDER BY kind, chunk_index`,
    [runId],
  );
  return rows;
}
/** The ledger once no row is mid-send: a fake has a message a moment before its row is settled. */
function settledLedger(runId: string): Promise<LedgerRow[]> {
  return waitFor(
    async () => {
      const rows = await ledger(runId);
      return rows.every((r) => r.status !== 'sending') && rows;
    },
    { what: `the ledger of ${runId} to settle` },
  );
}
async function audit(runId: string, action: string) {
  const { rows } = await owner.query<{ actor: string; detail: Record<string, unknown> }>(
    'SELECT actor, detail FROM audit_events WHERE run_id = $1 AND action = $2 ORDER BY audit_id',
    [runId, action],
  );
  return rows;
}
const sentTo = (chatId: number) =>
  telegram.sent.filter((m) => m.chat_id === String(chatId)).map((m) => m.text);
const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Takes `jobId` off `queue` as a worker would (active, locked by `token`), with a worker of the
 * test's own that runs nothing; the pipeline's workers must be stopped so they cannot take it.
 */
async function takeJob(queue: Queue, jobId: string, token: string) {
  const worker = new Worker(queue.name, null, {
    connection: queue.opts.connection,
    ...(queue.opts.prefix ? { prefix: queue.opts.prefix } : {}),
    autorun: false,
  });
  const job = (await worker.getNextJob(token)) as Job | undefined;
  expect(job?.id).toBe(jobId);
  return { job: job!, close: () => worker.close(true) };
}

describe('awooop jobs', () => {
  const orphan = randomUUID();
  const policyJob = stageJobId('policy', orphan);

  beforeAll(async () => {
    // A policy job for a run that does not exist: the worker refuses it (RUN_NOT_FOUND), and
    // it stays failed, to inspect, while no run is failed by it.
    await pipeline.queues.enqueue('policy', {
      projectId: PROJECT,
      runId: orphan,
      traceId: 'a'.repeat(32),
      stage: 'policy',
    });
    await waitFor(
      async () => (await pipeline.queues.queues.policy.getJobState(policyJob)) === 'failed',
      { what: 'the orphan policy job to fail', timeoutMs: 30_000 },
    );
  });

  it('lists the failed jobs of a stage, and says when there are none', async () => {
    const failed = await awooop('jobs', 'failed', 'policy');
    expect(failed).toMatchObject({ code: 0, stderr: '' });
    const line = failed.stdout.split('\n').find((l) => l.startsWith(policyJob));
    expect(line).toMatch(/attempts 1 .*RUN_NOT_FOUND/);
    const none = await awooop('jobs', 'failed', 'sanitize');
    expect(none).toMatchObject({ code: 0, stdout: 'no failed sanitize jobs\n' });
  });

  it('inspects a job: its data, state, attempts and error', async () => {
    const inspected = await awooop('jobs', 'inspect', policyJob);
    expect(inspected.code).toBe(0);
    expect(JSON.parse(inspected.stdout)).toMatchObject({
      id: policyJob,
      queue: 'policy',
      state: 'failed',
      data: { projectId: PROJECT, runId: orphan, stage: 'policy' },
      attemptsMade: 1,
      attempts: 5,
    });
  });

  it('puts one failed job, or all of a stage, back in the queue', async () => {
    const before = await pipeline.queues.queues.policy.getJob(policyJob);
    const retried = await awooop('jobs', 'retry', policyJob);
    expect(retried).toMatchObject({ code: 0, stdout: `retried ${policyJob}\n` });
    // The worker takes it again (and refuses it again: its run still does not exist).
    await waitFor(
      async () => {
        const job = await pipeline.queues.queues.policy.getJob(policyJob);
        return (job?.processedOn ?? 0) > (before?.processedOn ?? 0) && (await job?.isFailed());
      },
      { what: 'the retried job to run again', timeoutMs: 30_000 },
    );
    const all = await awooop('jobs', 'retry', '--all', 'policy');
    expect(all).toMatchObject({ code: 0, stdout: 'retried 1 failed policy job(s)\n' });
  });

  it('refuses bad input naming the field, and says when a job does not exist', async () => {
    const stage = await awooop('jobs', 'failed', 'polish');
    expect(stage.code).toBe(2);
    expect(stage.stderr).toContain('STAGE: expected a stage (resolve, policy, execute');
    const id = await awooop('jobs', 'inspect', 'not-a-job');
    expect(id.code).toBe(2);
    expect(id.stderr).toContain('JOB_ID: expected <stage>-<run id>');
    const all = await awooop('jobs', 'retry', '--all', 'nope');
    expect(all.code).toBe(2);
    expect(all.stderr).toContain('--all: expected a stage');
    const missing = stageJobId('execute', randomUUID());
    expect(await awooop('jobs', 'retry', missing)).toMatchObject({
      code: 1,
      stdout: `no job ${missing}\n`,
    });
    expect(await awooop('jobs', 'inspect', missing)).toMatchObject({ code: 1 });
  });
});

describe('awooop runs retry', () => {
  // Regression: `jobs retry` was the only way back, and the retried job found its run FAILED
  // and did nothing.
  it('revives a run whose model was down for every attempt: it completes, answered once', async () => {
    const chatId = 8101;
    model.setBehaviour(() => ({ status: 500 }));
    let run: RunRow;
    try {
      await post(chatId, 'model down');
      run = await settled('model down', 'FAILED');
    } finally {
      model.setBehaviour(null);
    }
    expect(run.failure_code).toBe('MODEL_UNAVAILABLE');
    await waitFor(() => sentTo(chatId).length === 1 || undefined, { what: 'the failure notice' });
    expect(sentTo(chatId)).toEqual([NOTICE]);

    // The job commands see the failed job, and `jobs retry` points to `runs retry`.
    const jobId = stageJobId('execute', run.run_id);
    const failed = await awooop('jobs', 'failed', 'execute');
    expect(failed.stdout).toMatch(new RegExp(`^${jobId}  attempts 5 .*MODEL_UNAVAILABLE`, 'm'));
    const jobRetry = await awooop('jobs', 'retry', jobId);
    expect(jobRetry.code).toBe(1);
    expect(jobRetry.stdout).toContain(
      `which is FAILED (MODEL_UNAVAILABLE): retrying the job would change nothing; use: awooop runs retry ${run.run_id} --project ${PROJECT}`,
    );
    expect(await pipeline.queues.queues.execute.getJobState(jobId)).toBe('failed');

    const retried = await awooop('runs', 'retry', run.run_id, '--project', PROJECT);
    expect(retried.stderr).toBe('');
    expect(retried).toMatchObject({
      code: 0,
      stdout: `retried run ${run.run_id} (retry 1, was MODEL_UNAVAILABLE): back in ADMITTED, execute enqueued\n`,
    });
    await settled('model down', 'COMPLETED', 60_000);
    await waitFor(() => sentTo(chatId).length === 2 || undefined, { what: 'the answer' });
    await pause(1500);
    expect(sentTo(chatId)).toEqual([NOTICE, 'model: model down']);
    expect(await settledLedger(run.run_id)).toMatchObject([
      { kind: 'failure', status: 'sent' },
      { kind: 'reply', chunk_index: 0, status: 'sent', attempts: 1 },
    ]);

    const { rows: timeline } = await owner.query<{ stage: string; from: string; to: string }>(
      'SELECT stage, from_state, to_state FROM run_transitions WHERE run_id = $1 ORDER BY transition_id',
      [run.run_id],
    );
    expect(timeline.map((t) => Object.values(t).join(':'))).toEqual([
      'ingress::RECEIVED',
      'resolve:RECEIVED:RESOLVED',
      'policy:RESOLVED:ADMITTED',
      'execute:ADMITTED:FAILED',
      'retry:FAILED:ADMITTED',
      'execute:ADMITTED:EXECUTED',
      'sanitize:EXECUTED:SANITIZED',
      'deliver:SANITIZED:COMPLETED',
    ]);
    expect(await audit(run.run_id, 'run.retried')).toEqual([
      {
        actor: `cli:${userInfo().username}`,
        detail: expect.objectContaining({
          stage: 'execute',
          to_state: 'ADMITTED',
          failure_code: 'MODEL_UNAVAILABLE',
          retry: 1,
        }),
      },
    ]);

    // A second retry is refused, naming the state, and changes nothing.
    const again = await awooop('runs', 'retry', run.run_id, '--project', PROJECT);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain(
      `RUN_NOT_FAILED: run ${run.run_id} is COMPLETED, not FAILED: only a failed run can be retried`,
    );
    expect(await audit(run.run_id, 'run.retried')).toHaveLength(1);
  }, 240_000);

  it('retries a run that failed at deliver after part of its answer went out: only the rest is sent', async () => {
    const chatId = 8201;
    const paragraph = (word: string) => Array.from({ length: 500 }, () => word).join(' ');
    const answer = [paragraph('alpha'), paragraph('POISON'), paragraph('gamma')].join('\n\n');
    model.respondNext({ content: answer });
    // The second chunk is refused once; the first went out before it, the third never left.
    telegram.failNext(1, {
      status: 400,
      method: 'sendMessage',
      textIncludes: 'POISON',
      description: 'Bad Request: chat not found',
    });
    await post(chatId, 'long answer');
    const run = await settled('long answer', 'FAILED', 60_000);
    expect(run.failure_code).toBe('CHANNEL_REJECTED');
    await waitFor(() => sentTo(chatId).length === 2 || undefined, { what: 'the failure notice' });
    const before = await settledLedger(run.run_id);
    expect(before).toMatchObject([
      { kind: 'failure', status: 'sent' },
      { kind: 'reply', chunk_index: 0, status: 'sent', attempts: 1 },
      { kind: 'reply', chunk_index: 1, status: 'failed', error_code: 'CHANNEL_REJECTED' },
      { kind: 'reply', chunk_index: 2, status: 'suppressed', error_code: 'RUN_FAILED' },
    ]);

    const retried = await awooop('runs', 'retry', run.run_id, '--project', PROJECT);
    expect(retried).toMatchObject({
      code: 0,
      stdout: `retried run ${run.run_id} (retry 1, was CHANNEL_REJECTED): back in SANITIZED, deliver enqueued, 2 unsent chunk(s) queued again\n`,
    });
    await settled('long answer', 'COMPLETED', 60_000);
    await waitFor(() => sentTo(chatId).length === 4 || undefined, { what: 'the rest' });
    await pause(1500);
    expect(sentTo(chatId)).toEqual([
      paragraph('alpha'),
      NOTICE,
      paragraph('POISON'),
      paragraph('gamma'),
    ]);
    const after = await ledger(run.run_id);
    expect(after).toMatchObject([
      { kind: 'failure', status: 'sent' },
      { kind: 'reply', chunk_index: 0, status: 'sent', attempts: 1 },
      { kind: 'reply', chunk_index: 1, status: 'sent', error_code: null },
      { kind: 'reply', chunk_index: 2, status: 'sent', error_code: null },
    ]);
    // The same rows, so the same ids (the idempotency keys a channel is sent).
    expect(after.map((r) => r.message_id)).toEqual(before.map((r) => r.message_id));
  }, 240_000);

  it('tells the user once when a retried run fails again, and counts the retries', async () => {
    const chatId = 8401;
    model.setBehaviour(() => ({ status: 401 }));
    let run: RunRow;
    try {
      await post(chatId, 'refused twice');
      run = await settled('refused twice', 'FAILED', 60_000);
      expect(run.failure_code).toBe('MODEL_REJECTED');
      await waitFor(() => sentTo(chatId).length === 1 || undefined, { what: 'the notice' });
      const first = await awooop('runs', 'retry', run.run_id, '--project', PROJECT);
      expect(first.stdout).toContain('(retry 1, was MODEL_REJECTED): back in ADMITTED');
      await waitFor(
        async () => ((await audit(run.run_id, 'run.failed')).length === 2 ? true : undefined),
        { what: 'the retried run to fail again', timeoutMs: 60_000 },
      );
    } finally {
      model.setBehaviour(null);
    }
    const second = await awooop('runs', 'retry', run.run_id, '--project', PROJECT);
    expect(second.stdout).toContain('(retry 2, was MODEL_REJECTED): back in ADMITTED');
    await settled('refused twice', 'COMPLETED', 60_000);
    await waitFor(() => sentTo(chatId).length === 2 || undefined, { what: 'the answer' });
    await pause(1500);
    expect(sentTo(chatId)).toEqual([NOTICE, 'model: refused twice']);
  }, 240_000);

  // Regression: a retry while the failing attempt's job was still running enqueued nothing (the
  // job id was taken), and the run waited in its stage for the sweeper.
  it("refuses while the run's job is still running, and retries once it has finished", async () => {
    const chatId = 8601;
    model.setBehaviour(() => ({ status: 401 }));
    let run: RunRow;
    try {
      await post(chatId, 'job still running');
      run = await settled('job still running', 'FAILED', 60_000);
      await waitFor(() => sentTo(chatId).length === 1 || undefined, { what: 'the notice' });
    } finally {
      model.setBehaviour(null);
    }
    await pipeline.stopWorkers();
    const jobId = stageJobId('execute', run.run_id);
    const queue = pipeline.queues.queues.execute;
    // the failed attempt's job, running again as if it were still finishing
    await (await queue.getJob(jobId))?.remove();
    await queue.add(
      'execute',
      { projectId: PROJECT, runId: run.run_id, traceId: run.trace_id, stage: 'execute' },
      { jobId },
    );
    const token = randomUUID();
    const taken = await takeJob(queue, jobId, token);
    try {
      const refused = await awooop('runs', 'retry', run.run_id, '--project', PROJECT);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toContain(
        `RUN_JOB_RUNNING: run ${run.run_id}'s execute job is still running; retry the run when it has finished`,
      );
      expect((await runOf('job still running'))?.state).toBe('FAILED');
      expect(await audit(run.run_id, 'run.retried')).toEqual([]);
      await taken.job.moveToCompleted('done', token, false);
    } finally {
      await taken.close();
      pipeline.startWorkers();
    }
    const retried = await awooop('runs', 'retry', run.run_id, '--project', PROJECT);
    expect(retried.stdout).toContain(
      '(retry 1, was MODEL_REJECTED): back in ADMITTED, execute enqueued',
    );
    await settled('job still running', 'COMPLETED', 60_000);
    await waitFor(() => sentTo(chatId).length === 2 || undefined, { what: 'the answer' });
  }, 240_000);

  // Regression: a failure notice whose deliver job had failed kept that job's id, so when the
  // retried run failed again its notice was never enqueued and the user heard nothing.
  it('clears a failed notice job, so the notice of a retry that fails too is sent', async () => {
    const chatId = 8701;
    model.setBehaviour(() => ({ status: 401 }));
    try {
      await pipeline.stopWorkers();
      pipeline.startWorkers(['resolve', 'policy', 'execute', 'sanitize']);
      await post(chatId, 'notice job failed');
      const run = await settled('notice job failed', 'FAILED', 60_000);
      // the notice's deliver job fails for good, as after eight attempts with Telegram down
      const noticeId = stageJobId('deliver', run.run_id, true);
      const queue = pipeline.queues.queues.deliver;
      await waitFor(async () => (await queue.getJob(noticeId)) ?? undefined, {
        what: 'the notice job',
      });
      const token = randomUUID();
      const taken = await takeJob(queue, noticeId, token);
      try {
        await taken.job.moveToFailed(
          new UnrecoverableError('CHANNEL_UNAVAILABLE: telegram down'),
          token,
          false,
        );
      } finally {
        await taken.close();
      }
      expect(await queue.getJobState(noticeId)).toBe('failed');
      expect(sentTo(chatId)).toEqual([]);

      const retried = await awooop('runs', 'retry', run.run_id, '--project', PROJECT);
      expect(retried.stdout).toContain('(retry 1, was MODEL_REJECTED): back in ADMITTED');
      await waitFor(
        async () => ((await audit(run.run_id, 'run.failed')).length === 2 ? true : undefined),
        { what: 'the retried run to fail again', timeoutMs: 60_000 },
      );
      pipeline.startWorkers(['deliver']);
      await waitFor(() => sentTo(chatId).length === 1 || undefined, {
        what: 'the notice of the second failure',
        timeoutMs: 60_000,
      });
      await pause(1500);
      expect(sentTo(chatId)).toEqual([NOTICE]);
    } finally {
      model.setBehaviour(null);
      await pipeline.stopWorkers();
      pipeline.startWorkers();
    }
  }, 240_000);

  it('refuses a run that failed at its approval: the decision stands', async () => {
    await pipeline.stopWorkers();
    let runId: string;
    try {
      const { run, approval } = await waitingApproval(pipeline, PROJECT, { chatId: 8501 });
      runId = run.runId;
      await decideApproval(
        {
          pool: db().pool,
          enqueue: pipeline.queues.enqueue,
          contracts: pipeline.ctx.contracts,
          channels: pipeline.ctx.channels,
        },
        {
          projectId: PROJECT,
          approvalId: approval.approvalId,
          decision: 'rejected',
          // the test tenant's owner, an ACL admin: only an approver decides
          decidedBy: 'email:owner@example.test',
          via: 'cli',
        },
      );
    } finally {
      pipeline.startWorkers();
    }
    const refused = await awooop('runs', 'retry', runId, '--project', PROJECT);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(
      `RUN_NOT_RETRYABLE: run ${runId} failed at its approval (APPROVAL_REJECTED): the decision stands`,
    );
    const { rows } = await owner.query<{ state: string }>(
      'SELECT state FROM runs WHERE run_id = $1',
      [runId],
    );
    expect(rows).toEqual([{ state: 'FAILED' }]);
    expect(await audit(runId, 'run.retried')).toEqual([]);
  }, 120_000);

  it('refuses a run that is not failed, naming its state, and bad input naming the field', async () => {
    const chatId = 8301;
    await post(chatId, 'fine run');
    const run = await settled('fine run', 'COMPLETED', 60_000);
    const refused = await awooop('runs', 'retry', run.run_id, '--project', PROJECT);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(`run ${run.run_id} is COMPLETED, not FAILED`);
    expect(await audit(run.run_id, 'run.retried')).toEqual([]);

    const unknown = randomUUID();
    const missing = await awooop('runs', 'retry', unknown, '--project', PROJECT);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain(`RUN_NOT_FOUND: no run ${unknown} in project ${PROJECT}`);
    const elsewhere = await awooop('runs', 'retry', run.run_id, '--project', 'other');
    expect(elsewhere.stderr).toContain(`no run ${run.run_id} in project other`);

    const noId = await awooop('runs', 'retry', 'nope', '--project', PROJECT);
    expect(noId).toMatchObject({ code: 2 });
    expect(noId.stderr).toContain('retry: name the RUN_ID (a UUID)');
    const noProject = await awooop('runs', 'retry', run.run_id);
    expect(noProject).toMatchObject({ code: 2 });
    expect(noProject.stderr).toContain('--project: required');
  }, 120_000);
});
