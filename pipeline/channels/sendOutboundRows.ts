import {
  claimOutbound,
  settleOutbound,
  type ClaimedRow,
  type OutboundOutcome,
  type OutboundRow,
} from '../../db/outboundMessages.ts';
import { isDatabaseUnavailable } from '../../db/isDatabaseUnavailable.ts';
import type { Run } from '../../db/runs.ts';
import { withProject } from '../../db/withProject.ts';
import type { ChannelContract } from '../contracts/channelContract.ts';
import type { ConversationEvent } from '../contracts/conversationEvent.ts';
import { AppError, NonRetryableError, RetryAfterError } from '../errors.ts';
import type { ErrorCode } from '../errorCodes.ts';
import type { ChannelContext } from './ChannelContext.ts';
import type { AccountSender, ChannelSender, SendResult, SendTarget } from './ChannelPlugin.ts';
import { assertAccountRunning } from './manager/accountGate.ts';
import { countChannel } from './manager/channelStats.ts';

/**
 * How long a claimed chunk is held before another worker may take it over: well past the
 * longest send (pacing, a LINE reply and its push fallback, 15 s each).
 */
const LEASE_MS = 60_000;
/** How long recording a sent chunk waits out an unreachable database. */
const SETTLE_DATABASE_WAIT_MS = 10 * 60_000;
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
 * Sends ledger rows in order, each at most once: a row is claimed (queued → sending, with a
 * lease) in its own transaction before the call and settled after it, so a second deliver —
 * a retry, a restarted worker, a twin job — skips what was sent and never sends a row another
 * worker holds. A row whose sender died mid-call is taken over when its lease runs out: where
 * the channel dedupes a repeat (a LINE push carries the row's id as `X-Line-Retry-Key`, an API
 * callback its `Idempotency-Key`) it is sent again; where it cannot (Telegram, a LINE reply)
 * it is settled `uncertain` rather than risk a second copy, and so is a call whose answer was
 * lost. A refused row stops the send: what follows stays queued for the caller to withdraw.
 */
export async function sendOutboundRows(
  target: Target,
  rows: readonly OutboundRow[],
): Promise<SendReport> {
  // A stopped account's rows stay queued: the job waits without spending an attempt.
  await assertAccountRunning(target.ctx, target.run);
  const pending = rows.filter((r) => r.status === 'queued' || r.status === 'sending');
  const report: SendReport = { sent: 0, uncertain: 0, failed: null };
  const size = Math.max(
    1,
    target.ctx.channels.find(target.channel.type)?.capabilities.batchSize ?? 1,
  );
  for (let i = 0; i < pending.length && !report.failed;) {
    const batch = pending.slice(i, i + size);
    i += batch.length;
    await sendBatch(target, batch, report);
  }
  const { redis, redisPrefix } = target.ctx;
  void countChannel(redis, redisPrefix, target.run, {
    outbound: report.sent,
    ...(report.failed ? { error: report.failed.code } : {}),
  });
  return report;
}

async function sendBatch(
  target: Target,
  batch: readonly OutboundRow[],
  report: SendReport,
): Promise<void> {
  const { ctx, run, event } = target;
  // Credentials are looked up before anything is claimed: a lookup that fails for a while
  // (the database away) leaves the rows queued and untouched, with no claim spent (a LINE
  // reply token may only be used by a row's first claim). One that can never succeed (a
  // missing secret, a type with no plugin) is a refusal: the batch is claimed and settled
  // failed below, unsent.
  let sender: ChannelSender<ChannelContract['type']> | null = null;
  let refusal: NonRetryableError | null = null;
  try {
    ({ sender } = await prepareSend(target));
  } catch (error) {
    if (!(error instanceof NonRetryableError)) throw error;
    refusal = error;
  }
  // A paced channel's send slot is waited for before the claim (up to seconds): a worker that
  // dies while it waits leaves the rows queued, to be sent by the next try, not `uncertain`.
  // Only for rows that looked free: a row another sender holds makes the claim fail (or, taken
  // over, settle `uncertain` unsent), and a slot reserved for it would only push the chat's
  // schedule back.
  if (sender?.pace && batch.every((r) => r.status === 'queued')) {
    await sender.pace(ctx, {
      projectId: run.projectId,
      accountId: run.accountId,
      conversation: event.conversation,
    });
  }
  const claimed: ClaimedRow[] = [];
  try {
    for (const row of batch) {
      const got = await withProject(ctx.pool, run.projectId, (tx) =>
        claimOutbound(tx, row.messageId, LEASE_MS),
      );
      if (got) {
        claimed.push(got);
        continue;
      }
      if (row.status === 'sending' || row.status === 'queued') {
        // Another worker holds it (or just settled it): release ours and come back later.
        throw new RetryAfterError(
          'DELIVERY_IN_PROGRESS',
          'another worker is sending this run',
          1000,
        );
      }
    }
  } catch (error) {
    // Nothing was sent: what this batch claimed goes back to queued for the retry.
    await settleClaimed(target, claimed, {
      status: 'queued',
      errorCode: error instanceof AppError ? error.code : 'SEND_FAILED',
    });
    throw error;
  }
  if (claimed.length === 0) return;
  const sendTarget: SendTarget<ChannelContract['type']> = {
    run,
    account: target.channel,
    event,
    now: ctx.now(),
  };
  // With no sender (refused above) no call is made; a takeover is still settled as unknown.
  const method = sender?.methodFor(claimed, sendTarget) ?? { name: 'unknown', dedupes: false };
  if (claimed.some((r) => r.takenOver) && !method.dedupes) {
    // The sender before us died during the call: it may have gone out, and a repeat could not
    // be told apart by the channel.
    await settleClaimed(target, claimed, {
      status: 'uncertain',
      method: method.name,
      errorCode: 'SENDER_LOST',
    });
    report.uncertain += claimed.length;
    return;
  }
  let result: SendResult;
  try {
    if (refusal || !sender) throw refusal ?? new NonRetryableError('SEND_FAILED', 'no sender');
    result = await sender.send(claimed, method, sendTarget);
  } catch (error) {
    if (error instanceof AppError && error.code === 'CHANNEL_UNCERTAIN') {
      await settleClaimed(target, claimed, {
        status: 'uncertain',
        method: method.name,
        errorCode: error.code,
      });
      ctx.logger.warn({ runId: run.runId, err: error.message }, 'a send may not have arrived');
      report.uncertain += claimed.length;
      return;
    }
    if (error instanceof NonRetryableError) {
      await settleClaimed(target, claimed, { status: 'failed', errorCode: error.code });
      ctx.logger.warn({ runId: run.runId, code: error.code }, 'channel refused a message');
      report.failed = { code: error.code, chunkIndex: claimed[0]!.chunkIndex };
      return;
    }
    // Not sent (a 429, a 5xx, a refused connection): back to queued so the retry sends it.
    await settleClaimed(target, claimed, {
      status: 'queued',
      errorCode: error instanceof AppError ? error.code : 'SEND_FAILED',
    });
    throw error;
  }
  // Sent: from here on a failure must never put the row back to queued (that would send it
  // again). Recording it is retried, through a database restart too; if Postgres stays away
  // longer the row keeps its lease, and the deliver that takes it over settles it as a
  // non-deduping channel's takeover would.
  await settleClaimed(target, claimed, {
    status: 'sent',
    method: result.method,
    externalMessageId: result.externalMessageId ?? null,
  });
  report.sent += claimed.length;
  for (const row of claimed) {
    ctx.logger.info(
      {
        runId: run.runId,
        projectId: run.projectId,
        traceId: run.traceId,
        channel: target.channel.type,
        accountId: run.accountId,
        kind: row.kind,
        chunk: row.chunkIndex,
        chunks: row.chunkCount,
        method: result.method,
      },
      'outbound sent',
    );
  }
}

/**
 * Settles what this worker claimed, retried 5 times for an error of the statement and for up
 * to {@link SETTLE_DATABASE_WAIT_MS} while the database is unreachable: only this process knows
 * whether a claimed chunk went out, and a claim left `sending` is taken over as "maybe sent"
 * (`uncertain`, never sent) once its lease runs out. Harmless twice: each settle is fenced by
 * this claim's attempt number, so a repeat after a lost commit changes nothing.
 */
async function settleClaimed(
  target: Target,
  rows: readonly ClaimedRow[],
  outcome: OutboundOutcome,
): Promise<void> {
  const giveUpAt = Date.now() + SETTLE_DATABASE_WAIT_MS;
  for (let attempt = 1; ; attempt += 1) {
    try {
      await settleAll(target, rows, outcome);
      return;
    } catch (error) {
      const away = isDatabaseUnavailable(error);
      if (away ? Date.now() >= giveUpAt : attempt >= 5) throw error;
      target.ctx.logger.warn(
        {
          runId: target.run.runId,
          attempt,
          err: error instanceof Error ? error.message : String(error),
        },
        'recording a claimed chunk failed; retrying',
      );
      await new Promise((r) => setTimeout(r, Math.min(5000, 200 * 2 ** attempt)));
    }
  }
}

async function settleAll(
  { ctx, run }: Target,
  rows: readonly ClaimedRow[],
  outcome: OutboundOutcome,
): Promise<void> {
  if (rows.length === 0) return;
  await withProject(ctx.pool, run.projectId, async (tx) => {
    for (const row of rows) {
      if (!(await settleOutbound(tx, row, outcome))) {
        ctx.logger.warn({ runId: run.runId, messageId: row.messageId }, 'lost a chunk lease');
      }
    }
  });
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
