import type { Logger } from 'pino';
import type { CommonQueryMethods } from 'slonik';
import { enqueueOutbound, requeueOutbound, withdrawOutbound } from '../../db/outboundMessages.ts';
import { releaseRunBudget } from '../../db/budgets.ts';
import { removeRunText } from '../../db/runText.ts';
import { transitionRun, type Run } from '../../db/runs.ts';
import type { ChannelRegistry } from '../channels/ChannelPlugin.ts';
import type { ChannelContract } from '../contracts/channelContract.ts';
import { formatForChannel } from '../sanitize/formatForChannel.ts';
import type { RunState } from '../contracts/runState.ts';
import type { ErrorCode } from '../errorCodes.ts';
import { removesTranscripts } from './removesTranscripts.ts';

/**
 * Ends a run with a failure code: the detail stays on the run and in the audit; the user gets
 * the channel's short failure message, only if the policy stage had already let the run speak
 * (`live`) — a shadow run, or one that failed before policy decided, stays silent. Unsent
 * answer chunks and progress notes are withdrawn, so a failed run never answers as well, and
 * budget holds of steps that never settled are given back. Under `privacy.storeTranscripts:
 * false` the run's message text is removed in the same transaction.
 * `from` is the state the caller saw: a run that has moved on since is left alone (the
 * caller's view is stale), so a late timeout cannot fail a run that is being delivered.
 * Harmless twice: the transition only applies to a run still in `from`, and the notice's
 * ledger key (run, 'failure', 0) admits one row. The caller enqueues the notice's deliver.
 * With a `logger`, the refusal is logged at `warn` with its code and stage (not its message
 * or detail, which may quote what the run was about).
 * A retried run that fails again gets its notice back only if a retry withdrew it unsent:
 * the user is told once. The notice is written in the channel plugin's dialect; a channel
 * whose answers are stored, not sent (an API account without a callback), gets none; on a type
 * with no registered plugin it is plain text, and deliver refuses it as it refuses the answer.
 */
export async function failRun(
  ctx: { actor: string; logger?: Logger | undefined; channels: ChannelRegistry },
  db: CommonQueryMethods,
  run: Run,
  failure: { code: ErrorCode; message: string; detail?: Record<string, unknown> },
  {
    stage,
    startedAt,
    channel,
    from,
    removeText,
  }: {
    stage: string;
    startedAt: number;
    channel: ChannelContract | null;
    from: RunState | readonly RunState[];
    /**
     * Whether the run's text is removed as it fails (`privacy.storeTranscripts: false`);
     * read from the run's effective policy when absent.
     */
    removeText?: boolean;
  },
): Promise<boolean> {
  const moved = await transitionRun(db, {
    runId: run.runId,
    from,
    to: 'FAILED',
    stage,
    actor: ctx.actor,
    startedAt,
    changes: { failure },
  });
  if (!moved) return false;
  // A step reserved and never settled (the run ended first) gives its hold back.
  await releaseRunBudget(db, run);
  ctx.logger?.warn(
    { runId: run.runId, projectId: run.projectId, traceId: run.traceId, stage, code: failure.code },
    'run failed',
  );
  await withdrawOutbound(db, run.runId, ['reply', 'status'], 'RUN_FAILED');
  // After the withdrawal, so the withdrawn answer rows lose their text too; the failure
  // notice is the channel's own words.
  if (removeText ?? removesTranscripts(run)) await removeRunText(db, [run.runId]);
  if (!channel) return moved;
  const plugin = ctx.channels.find(channel.type);
  if (plugin?.delivery(channel) === 'store') return moved;
  const format = plugin?.dialect(channel) ?? 'plain';
  await enqueueOutbound(
    db,
    run,
    'failure',
    plugin
      ? plugin.format(channel.failureMessage, channel, null)
      : formatForChannel(channel.failureMessage, format, null),
    {
      format,
      suppressed: run.live !== true,
    },
  );
  await requeueOutbound(db, run.runId, ['failure'], { codes: ['RUN_RETRIED'] });
  return moved;
}
