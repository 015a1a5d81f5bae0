import { listOutbound } from '../../db/outboundMessages.ts';
import { getRunEvent, transitionRun } from '../../db/runs.ts';
import { withProject } from '../../db/withProject.ts';
import { sendOutboundRows } from '../channels/sendOutboundRows.ts';
import { ConversationEvent } from '../contracts/conversationEvent.ts';
import type { RunJob } from '../contracts/runJob.ts';
import { failRun } from './failRun.ts';
import { loadPinnedChannel } from './loadPinnedContracts.ts';
import { alreadyDone, loadRun } from './loadRun.ts';
import type { StageContext, StageOutcome } from './StageContext.ts';

/**
 * deliver: sends the run's queued ledger rows through its channel, in order, then completes the
 * run. For a failed run it sends the pending failure notice. Shadow rows are `suppressed` and
 * never reach a channel. Harmless twice: each row is claimed and settled in the ledger, so a
 * sent row is skipped, and completing is conditional on the `SANITIZED` state.
 */
export async function deliver(ctx: StageContext, job: RunJob): Promise<StageOutcome> {
  const startedAt = ctx.now();
  const loaded = await withProject(ctx.pool, job.projectId, async (tx) => {
    const run = await loadRun(tx, job);
    if (run.state !== 'SANITIZED' && run.state !== 'FAILED')
      return { done: alreadyDone(run) } as const;
    const rows = await listOutbound(tx, run.runId);
    const channel = await loadPinnedChannel(ctx, tx, run);
    const event = ConversationEvent.parse(await getRunEvent(tx, run));
    return { run, rows, channel, event } as const;
  });
  if ('done' in loaded) return loaded.done;
  const { run, rows, channel, event } = loaded;
  const failed = channel ? await sendOutboundRows({ ctx, run, channel, event }, rows) : 0;
  if (run.state !== 'SANITIZED') return { next: null };

  const counts = { sent: 0, suppressed: 0, failed };
  for (const row of rows) {
    if (row.status === 'suppressed') counts.suppressed += 1;
    else if (row.kind === 'reply') counts.sent += 1;
  }
  counts.sent -= failed;
  await withProject(ctx.pool, job.projectId, async (tx) => {
    if (failed > 0) {
      await failRun(
        ctx,
        tx,
        run,
        { code: 'CHANNEL_REJECTED', message: 'the channel refused the answer', detail: counts },
        { stage: 'deliver', startedAt, channel: null },
      );
      return;
    }
    await transitionRun(tx, {
      runId: run.runId,
      from: 'SANITIZED',
      to: 'COMPLETED',
      stage: 'deliver',
      actor: ctx.actor,
      startedAt,
      detail: counts,
    });
  });
  return { next: null };
}
