import type { CommonQueryMethods } from 'slonik';
import {
  listOutbound,
  storeOutbound,
  withdrawOutbound,
  type AnswerKind,
  type OutboundRow,
} from '../../db/outboundMessages.ts';
import { transitionRun, type Run } from '../../db/runs.ts';
import { withProject } from '../../db/withProject.ts';
import { sendOwnerAlerts } from '../alerts/ownerAlerts.ts';
import { sendOutboundRows } from '../channels/sendOutboundRows.ts';
import type { RunJob } from '../contracts/runJob.ts';
import { failRun } from '../runs/failRun.ts';
import { removesTranscripts } from '../runs/removesTranscripts.ts';
import { removeRunText } from '../../db/runText.ts';
import { loadPinnedChannel } from '../runs/loadPinnedContracts.ts';
import { loadRunWithEvent } from '../runs/loadRun.ts';
import { alreadyDone } from './alreadyDone.ts';
import type { StageContext } from '../StageContext.ts';
import type { StageOutcome } from './StageOutcome.ts';

/**
 * deliver: sends the run's queued ledger rows through its channel, in order, then completes the
 * run. A progress note the answer overtook is withdrawn, not sent late. For a failed run it
 * sends only the pending failure notice. Shadow rows are `suppressed` and never reach a
 * channel. A chunk the channel refuses fails the run: later chunks are withdrawn and the user
 * gets the failure notice instead of half an answer. Owners' budget alerts the run crossed go
 * out after its own rows, through the approvals account (`sendOwnerAlerts`), whatever the
 * run's channel; they never hold the run up.
 * Harmless twice: each row is claimed and settled in the ledger (a stored row changes only
 * from `queued`), so a sent (or uncertain) row is never sent again, and completing is
 * conditional on the `SANITIZED` state. Under `privacy.storeTranscripts: false` the run's
 * message text is removed in the transaction that completes it.
 */
export async function deliver(ctx: StageContext, job: RunJob): Promise<StageOutcome> {
  const startedAt = ctx.now();
  const complete = (
    tx: CommonQueryMethods,
    counts: { sent: number; uncertain: number; suppressed: number },
  ) =>
    transitionRun(tx, {
      runId: job.runId,
      from: 'SANITIZED',
      to: 'COMPLETED',
      stage: 'deliver',
      actor: ctx.actor,
      startedAt,
      detail: counts,
    });
  /**
   * Nothing leaves the platform (the API channel without a callback: the answer is stored on
   * the run), so recording the chunks and completing the run are one transaction instead of a
   * claim, a settle and a completion. Locks as failRun does — the run row (the transition)
   * before its ledger rows — so the two cannot deadlock. Null when a row is still held by an
   * earlier claim: the general path settles it.
   */
  const deliverStored = async (
    tx: CommonQueryMethods,
    run: Run,
    rows: readonly OutboundRow[],
  ): Promise<StageOutcome | null> => {
    if (rows.some((r) => r.status === 'sending')) return null;
    const stored = async (kind: AnswerKind) => {
      const chunks = await storeOutbound(tx, run.runId, [kind]);
      if (chunks === 0) return;
      ctx.logger.info(
        {
          runId: run.runId,
          projectId: run.projectId,
          traceId: run.traceId,
          channel: run.channel,
          accountId: run.accountId,
          kind,
          chunks,
          method: 'stored',
        },
        'outbound sent',
      );
    };
    if (run.state === 'FAILED') {
      await stored('failure');
      return { next: null };
    }
    const queued = (kind: AnswerKind) =>
      rows.filter((r) => r.kind === kind && r.status === 'queued').length;
    const moved = await complete(tx, {
      sent: queued('reply'),
      uncertain: 0,
      suppressed: rows.filter((r) => r.status === 'suppressed').length + queued('status'),
    });
    if (moved) {
      await withdrawOutbound(tx, run.runId, ['status'], 'OVERTAKEN');
      await stored('reply');
      // The stored answer is what its client reads: it stays until retention removes it.
      if (removesTranscripts(run)) await removeRunText(tx, [run.runId], { keepAnswer: true });
    }
    return { next: null };
  };
  const loaded = await withProject(ctx.pool, job.projectId, async (tx) => {
    const found = await loadRunWithEvent(tx, job);
    const run = found.run;
    if (run.state !== 'SANITIZED' && run.state !== 'FAILED')
      return { done: alreadyDone(run), run, alerts: [] as readonly OutboundRow[] } as const;
    const channel = await loadPinnedChannel(ctx, tx, run);
    const stores =
      channel !== null && ctx.channels.find(channel.type)?.delivery(channel) === 'store';
    if (!stores && run.state === 'SANITIZED')
      await withdrawOutbound(tx, run.runId, ['status'], 'OVERTAKEN');
    // One listing serves both: the run's own rows and the owners' alerts it crossed.
    let listed = await listOutbound(tx, run.runId, { alerts: true });
    const alerts = listed.filter((r) => r.kind === 'alert');
    if (stores) {
      const done = await deliverStored(
        tx,
        run,
        listed.filter((r) => r.kind !== 'alert'),
      );
      if (done) return { done, run, alerts } as const;
      // A row is still held by an earlier claim: the general path settles it.
      if (run.state === 'SANITIZED') {
        await withdrawOutbound(tx, run.runId, ['status'], 'OVERTAKEN');
        listed = await listOutbound(tx, run.runId);
      }
    }
    const rows = listed.filter(
      (r) => r.kind !== 'alert' && (run.state === 'SANITIZED' || r.kind === 'failure'),
    );
    return { run, rows, alerts, channel, event: found.event() } as const;
  });
  if ('done' in loaded) {
    await sendOwnerAlerts(ctx, loaded.run, loaded.alerts);
    return loaded.done;
  }
  const { run, rows, alerts, channel, event } = loaded;
  const sent = channel
    ? await sendOutboundRows({ ctx, run, channel, event }, rows)
    : { sent: 0, uncertain: 0, failed: null };
  if (run.state !== 'SANITIZED') {
    await sendOwnerAlerts(ctx, run, alerts);
    return { next: null };
  }

  const counts = {
    sent: sent.sent,
    uncertain: sent.uncertain,
    suppressed: rows.filter((r) => r.status === 'suppressed').length,
  };
  return withProject(ctx.pool, job.projectId, async (tx): Promise<StageOutcome> => {
    if (sent.failed) {
      await failRun(
        ctx,
        tx,
        run,
        {
          code: sent.failed.code,
          message: 'the channel refused the answer',
          detail: { ...counts, chunk: sent.failed.chunkIndex },
        },
        { stage: 'deliver', startedAt, channel, from: 'SANITIZED' },
      );
      return { next: 'deliver', notice: true };
    }
    const completed = await complete(tx, counts);
    // Every row is settled now: the answer has left, and its text with it.
    if (completed && removesTranscripts(run)) await removeRunText(tx, [run.runId]);
    return { next: null };
  }).then(async (outcome) => {
    if (!sent.failed) await sendOwnerAlerts(ctx, run, alerts);
    return outcome;
  });
}
