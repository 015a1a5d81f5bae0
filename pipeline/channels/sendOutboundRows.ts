import type { OutboundRow } from '../../db/outboundMessages.ts';
import type { Run } from '../../db/runs.ts';
import type { ChannelContract } from '../contracts/channelContract.ts';
import type { ConversationEvent } from '../contracts/conversationEvent.ts';
import type { ErrorCode } from '../errorCodes.ts';
import type { ChannelContext } from './ChannelContext.ts';
import type { AccountSender, SendTarget } from './ChannelPlugin.ts';
import { sendLedgerBatch, type Outlet } from './sendLedgerBatch.ts';

/** What a send is for: the run, its pinned account contract and the event it answers. */
export type Target = {
  ctx: ChannelContext;
  run: Run;
  channel: ChannelContract;
  event: ConversationEvent;
};

/** What one deliver did with the rows it was given. */
export type SendReport = {
  sent: number;
  /** Rows whose call may or may not have reached the channel; never repeated. */
  uncertain: number;
  /** The first refusal, after which nothing more was sent. */
  failed: { code: ErrorCode; chunkIndex: number } | null;
};

/**
 * Sends a run's answer rows in order, in batches of the channel's `batchSize`, each at most
 * once, by {@link sendLedgerBatch} (claim → send → settle): a second deliver — a retry, a
 * restarted worker, a twin job — skips what was sent and never sends a row another worker
 * holds. A row whose sender died mid-call is taken over when its lease runs out: where the
 * channel dedupes a repeat (a LINE push carries the row's id as `X-Line-Retry-Key`, an API
 * callback its `Idempotency-Key`) it is sent again; where it cannot (Telegram, a LINE reply)
 * it is settled `uncertain` rather than risk a second copy, and so is a call whose answer was
 * lost. A refused row stops the send: what follows stays queued for the caller to withdraw.
 */
export async function sendOutboundRows(
  target: Target,
  rows: readonly OutboundRow[],
): Promise<SendReport> {
  const pending = rows.filter((r) => r.status === 'queued' || r.status === 'sending');
  const report: SendReport = { sent: 0, uncertain: 0, failed: null };
  const size = Math.max(
    1,
    target.ctx.channels.find(target.channel.type)?.capabilities.batchSize ?? 1,
  );
  const outlet = answerOutlet(target);
  for (let i = 0; i < pending.length && !report.failed;) {
    const batch = pending.slice(i, i + size);
    i += batch.length;
    const outcome = await sendLedgerBatch(outlet, batch);
    if (outcome.status === 'sent') report.sent += outcome.rows;
    if (outcome.status === 'uncertain') report.uncertain += outcome.rows;
    if (outcome.status === 'failed')
      report.failed = { code: outcome.code, chunkIndex: outcome.chunkIndex };
  }
  return report;
}

/** The run's own account, answering the conversation of the event it is for. */
function answerOutlet(target: Target): Outlet {
  const { ctx, run, channel, event } = target;
  const sendTarget = (): SendTarget<ChannelContract['type']> => ({
    run,
    account: channel,
    event,
    now: ctx.now(),
  });
  // One clock reading per batch: the method chosen (a LINE reply while its token is fresh)
  // and the call made see the same time.
  let batchTarget: SendTarget<ChannelContract['type']> | null = null;
  return {
    ctx,
    projectId: run.projectId,
    runId: run.runId,
    accountId: run.accountId,
    prepare: async () => (await prepareSend(target)).sender,
    conversation: () => event.conversation,
    method: (sender, rows) => sender.methodFor(rows, (batchTarget = sendTarget())),
    call: (sender, rows, method) => sender.send(rows, method, batchTarget ?? sendTarget()),
    logFields: { traceId: run.traceId, channel: channel.type },
  };
}

/**
 * Resolves the account's credentials and takes its cached sender (built once per account and
 * credential version by the registry), before any row is claimed.
 */
function prepareSend({ ctx, run, channel }: Target): Promise<AccountSender> {
  return ctx.channels.sender(
    (ref) => ctx.secrets.resolve(run.projectId, ref),
    { projectId: run.projectId, accountId: run.accountId },
    channel,
  );
}
