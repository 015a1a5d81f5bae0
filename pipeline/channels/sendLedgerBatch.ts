import type { CommonQueryMethods } from 'slonik';
import {
  claimOutbound,
  settleOutbound,
  type ClaimedRow,
  type OutboundOutcome,
  type OutboundRow,
} from '../../db/outboundMessages.ts';
import { isDatabaseUnavailable } from '../../db/isDatabaseUnavailable.ts';
import { withProject } from '../../db/withProject.ts';
import type { ChannelType } from '../contracts/common.ts';
import { AppError, NonRetryableError, RetryAfterError } from '../errors.ts';
import type { ErrorCode } from '../errorCodes.ts';
import type { ChannelContext } from './ChannelContext.ts';
import type { ChannelSender, PaceKey, SendMethod, SendResult } from './ChannelPlugin.ts';
import { assertAccountRunning } from './manager/accountGate.ts';
import { countChannel } from './manager/channelStats.ts';

/**
 * How a claimed chunk is held before another sender may take it over: well past the longest
 * send (pacing, a LINE reply and its push fallback, 15 s each).
 */
const LEASE_MS = 60_000;
/** How long recording a sent row waits out an unreachable database. */
const SETTLE_DATABASE_WAIT_MS = 10 * 60_000;

/**
 * One account's way of sending ledger rows: what a run's answer and an approver's notice
 * share (the claim, the lease, the settle) and where they differ (the call, the pacing key,
 * what is recorded with a sent row).
 */
export type Outlet = {
  ctx: ChannelContext;
  projectId: string;
  /** The run the rows belong to (for logs). */
  runId: string;
  /** The account the rows go out on. */
  accountId: string;
  /**
   * The account's sender, before any row is claimed. A `NonRetryableError` is a refusal (a
   * missing secret, an approval no longer pending): the rows are claimed and settled `failed`
   * unsent. Any other error leaves them queued and untouched.
   */
  prepare(): Promise<ChannelSender<ChannelType>>;
  /** Whose send slot a row waits for. */
  conversation(row: OutboundRow): PaceKey['conversation'];
  /** The call for a claimed batch (rows in order). */
  method(sender: ChannelSender<ChannelType>, rows: readonly ClaimedRow[]): SendMethod;
  /** Makes the call. */
  call(
    sender: ChannelSender<ChannelType>,
    rows: readonly ClaimedRow[],
    method: SendMethod,
  ): Promise<SendResult>;
  /** Written in the transaction that records a row `sent` (an audit row). */
  recordSent?(tx: CommonQueryMethods, row: ClaimedRow, result: SendResult): Promise<void>;
  /** Added to the `outbound sent` log line. */
  logFields?: Record<string, unknown>;
};

/** What became of one batch. */
export type BatchOutcome =
  /** Nothing was claimed (every row was settled already). */
  | { status: 'skipped' }
  | { status: 'sent' | 'uncertain'; rows: number }
  /** Refused (by the channel, or before any call): settled `failed`. */
  | { status: 'failed'; rows: number; code: ErrorCode; chunkIndex: number };

/**
 * Sends one batch of ledger rows, each at most once, whatever its kind: every row is claimed
 * (queued → sending, with a lease) in its own transaction before the call and settled after
 * it, so a second send — a retry, a restarted worker, a twin job — skips what was sent and
 * never sends a row another sender holds (that throws `DELIVERY_IN_PROGRESS`, to come back
 * later). A row whose sender died mid-call is taken over when its lease runs out: sent again
 * where the channel dedupes a repeat of the call, settled `uncertain` where it cannot, and so
 * is a call whose answer was lost. A refusal settles the batch `failed`. A retryable failure
 * (a 429, a 5xx, no connection) puts the batch back to `queued` and is rethrown.
 *
 * Every send of an outbound row — an answer chunk, a progress or failure note, an approval
 * notice — starts here: a check that must hold before anything goes out on an account
 * belongs at the top of this function.
 */
export async function sendLedgerBatch(
  outlet: Outlet,
  batch: readonly OutboundRow[],
): Promise<BatchOutcome> {
  const key = { projectId: outlet.projectId, accountId: outlet.accountId };
  // A stopped account's rows stay queued: the job waits without spending an attempt.
  await assertAccountRunning(outlet.ctx, key);
  // The account's API is a dependency of its own: a hung API holds only this account's share
  // of the senders, and a send that finds the share full waits (no attempt spent) before it
  // claims anything, so its rows stay queued and untouched.
  const bulkheads = outlet.ctx.bulkheads;
  const outcome = bulkheads
    ? await bulkheads.hold(
        `channel:${outlet.projectId}:${outlet.accountId}`,
        bulkheads.limits.dependencySlots,
        () => sendUnlessHeld(outlet, batch),
      )
    : await sendUnlessHeld(outlet, batch);
  // Every row an account sends counts on it, answers and approval notices alike.
  void countChannel(outlet.ctx.redis, outlet.ctx.redisPrefix, key, {
    outbound: outcome.status === 'sent' ? outcome.rows : 0,
    ...(outcome.status === 'failed' ? { error: outcome.code } : {}),
  });
  return outcome;
}

/** One batch's claim → send → settle, once the account is known to be running. */
async function sendUnlessHeld(
  outlet: Outlet,
  batch: readonly OutboundRow[],
): Promise<BatchOutcome> {
  const { ctx } = outlet;
  // Credentials are looked up before anything is claimed: a lookup that fails for a while
  // (the database away) leaves the rows queued and untouched, with no claim spent (a LINE
  // reply token may only be used by a row's first claim). One that can never succeed is a
  // refusal: the batch is claimed and settled failed below, unsent.
  let sender: ChannelSender<ChannelType> | null = null;
  let refusal: NonRetryableError | null = null;
  try {
    sender = await outlet.prepare();
  } catch (error) {
    if (!(error instanceof NonRetryableError)) throw error;
    refusal = error;
  }
  // A paced channel's send slot is waited for before the claim (up to seconds): a worker that
  // dies while it waits leaves the rows queued, to be sent by the next try, not `uncertain`.
  // Only for rows that looked free: a row another sender holds makes the claim fail (or, taken
  // over, settle `uncertain` unsent), and a slot reserved for it would only push the chat's
  // schedule back.
  if (sender?.pace && batch.length > 0 && batch.every((r) => r.status === 'queued')) {
    await sender.pace(ctx, {
      projectId: outlet.projectId,
      accountId: outlet.accountId,
      conversation: outlet.conversation(batch[0]!),
    });
  }
  const claimed: ClaimedRow[] = [];
  try {
    for (const row of batch) {
      const got = await withProject(ctx.pool, outlet.projectId, (tx) =>
        claimOutbound(tx, row.messageId, LEASE_MS),
      );
      if (got) {
        claimed.push(got);
        continue;
      }
      if (row.status === 'sending' || row.status === 'queued') {
        // Another sender holds it (or just settled it): release ours and come back later.
        throw new RetryAfterError('DELIVERY_IN_PROGRESS', 'another worker is sending this', 1000);
      }
    }
  } catch (error) {
    // Nothing was sent: what this batch claimed goes back to queued for the retry.
    await settleClaimed(outlet, claimed, {
      status: 'queued',
      errorCode: error instanceof AppError ? error.code : 'SEND_FAILED',
    });
    throw error;
  }
  if (claimed.length === 0) return { status: 'skipped' };
  // With no sender (refused above) no call is made; a takeover is still settled as unknown.
  const method = sender ? outlet.method(sender, claimed) : { name: 'unknown', dedupes: false };
  if (claimed.some((r) => r.takenOver) && !method.dedupes) {
    // The sender before us died during the call: it may have gone out, and a repeat could not
    // be told apart by the channel.
    await settleClaimed(outlet, claimed, {
      status: 'uncertain',
      method: method.name,
      errorCode: 'SENDER_LOST',
    });
    return { status: 'uncertain', rows: claimed.length };
  }
  let result: SendResult;
  try {
    if (refusal || !sender) throw refusal ?? new NonRetryableError('SEND_FAILED', 'no sender');
    result = await outlet.call(sender, claimed, method);
  } catch (error) {
    const log = { runId: outlet.runId, kind: claimed[0]!.kind, accountId: outlet.accountId };
    if (error instanceof AppError && error.code === 'CHANNEL_UNCERTAIN') {
      await settleClaimed(outlet, claimed, {
        status: 'uncertain',
        method: method.name,
        errorCode: error.code,
      });
      ctx.logger.warn({ ...log, err: error.message }, 'a send may not have arrived');
      return { status: 'uncertain', rows: claimed.length };
    }
    if (error instanceof NonRetryableError) {
      await settleClaimed(outlet, claimed, { status: 'failed', errorCode: error.code });
      ctx.logger.warn({ ...log, code: error.code }, 'channel refused a message');
      return {
        status: 'failed',
        rows: claimed.length,
        code: error.code,
        chunkIndex: claimed[0]!.chunkIndex,
      };
    }
    // Not sent (a 429, a 5xx, a refused connection): back to queued so the retry sends it.
    await settleClaimed(outlet, claimed, {
      status: 'queued',
      errorCode: error instanceof AppError ? error.code : 'SEND_FAILED',
    });
    throw error;
  }
  // Sent: from here on a failure must never put the row back to queued (that would send it
  // again). Recording it is retried, through a database restart too; if Postgres stays away
  // longer the row keeps its lease, and the send that takes it over settles it as a
  // non-deduping channel's takeover would.
  await settleClaimed(
    outlet,
    claimed,
    { status: 'sent', method: result.method, externalMessageId: result.externalMessageId ?? null },
    result,
  );
  for (const row of claimed) {
    ctx.logger.info(
      {
        runId: outlet.runId,
        projectId: outlet.projectId,
        accountId: outlet.accountId,
        ...outlet.logFields,
        kind: row.kind,
        chunk: row.chunkIndex,
        chunks: row.chunkCount,
        method: result.method,
      },
      'outbound sent',
    );
  }
  return { status: 'sent', rows: claimed.length };
}

/**
 * Settles what this sender claimed, retried 5 times for an error of the statement and for up
 * to {@link SETTLE_DATABASE_WAIT_MS} while the database is unreachable: only this process knows
 * whether a claimed row went out, and a claim left `sending` is taken over as "maybe sent"
 * (`uncertain`, never sent) once its lease runs out. Harmless twice: each settle is fenced by
 * this claim's attempt number, so a repeat after a lost commit changes nothing (and writes no
 * second `recordSent` row: that is written only by the settle that still held the claim).
 */
async function settleClaimed(
  outlet: Outlet,
  rows: readonly ClaimedRow[],
  outcome: OutboundOutcome,
  result?: SendResult,
): Promise<void> {
  const giveUpAt = Date.now() + SETTLE_DATABASE_WAIT_MS;
  for (let attempt = 1; ; attempt += 1) {
    try {
      await settleAll(outlet, rows, outcome, result);
      return;
    } catch (error) {
      const away = isDatabaseUnavailable(error);
      if (away ? Date.now() >= giveUpAt : attempt >= 5) throw error;
      outlet.ctx.logger.warn(
        {
          runId: outlet.runId,
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
  outlet: Outlet,
  rows: readonly ClaimedRow[],
  outcome: OutboundOutcome,
  result: SendResult | undefined,
): Promise<void> {
  if (rows.length === 0) return;
  await withProject(outlet.ctx.pool, outlet.projectId, async (tx) => {
    for (const row of rows) {
      if (!(await settleOutbound(tx, row, outcome))) {
        outlet.ctx.logger.warn(
          { runId: outlet.runId, messageId: row.messageId },
          'lost a chunk lease',
        );
        continue;
      }
      if (result && outlet.recordSent) await outlet.recordSent(tx, row, result);
    }
  });
}
