import { claimOutbound, settleOutbound, type OutboundRow } from '../../db/outboundMessages.ts';
import type { Run } from '../../db/runs.ts';
import { withProject } from '../../db/withProject.ts';
import type { ChannelContract } from '../contracts/channelContract.ts';
import type { ConversationEvent } from '../contracts/conversationEvent.ts';
import { AppError, NonRetryableError, RetryAfterError } from '../errors.ts';
import type { StageContext } from '../stages/StageContext.ts';
import { postCallback } from './api/postCallback.ts';
import { createLineSender } from './line/createLineSender.ts';
import { reserveSendSlot, telegramSendBuckets } from './sendRateLimiter.ts';
import { createTelegramSender } from './telegram/createTelegramSender.ts';

/** How long a claimed chunk is held before another worker may take it over. */
const LEASE_MS = 30_000;
/** Waits for a send slot up to this long in-process; longer waits go back to the queue. */
const MAX_INLINE_WAIT_MS = 2000;
/** LINE takes at most five messages per reply or push. */
const LINE_BATCH = 5;

type Target = { ctx: StageContext; run: Run; channel: ChannelContract; event: ConversationEvent };

/**
 * Sends ledger rows in order, each exactly once: a row is claimed (queued → sending, with a
 * lease) in its own transaction before the call and settled after it, so a second deliver —
 * a retry, a restarted worker, a twin job — skips what was sent and never sends a row another
 * worker holds. A row whose sender died mid-call is taken over when its lease runs out; for
 * LINE the push carries the row's id as `X-Line-Retry-Key`, so LINE drops a repeat. Returns
 * how many rows failed for good.
 */
export async function sendOutboundRows(
  target: Target,
  rows: readonly OutboundRow[],
): Promise<number> {
  const pending = rows.filter((r) => r.status === 'queued' || r.status === 'sending');
  let failed = 0;
  for (let i = 0; i < pending.length;) {
    const batch =
      target.channel.type === 'line' ? pending.slice(i, i + LINE_BATCH) : pending.slice(i, i + 1);
    i += batch.length;
    failed += await sendBatch(target, batch);
  }
  return failed;
}

async function sendBatch(target: Target, batch: readonly OutboundRow[]): Promise<number> {
  const { ctx, run } = target;
  const claimed: OutboundRow[] = [];
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
      await settleAll(target, claimed, { status: 'queued', errorCode: 'DELIVERY_IN_PROGRESS' });
      throw new RetryAfterError('DELIVERY_IN_PROGRESS', 'another worker is sending this run', 1000);
    }
  }
  if (claimed.length === 0) return 0;
  try {
    const result = await sendClaimed(target, claimed);
    await settleAll(target, claimed, {
      status: 'sent',
      method: result.method,
      externalMessageId: result.externalMessageId ?? null,
    });
    return 0;
  } catch (error) {
    if (error instanceof NonRetryableError) {
      await settleAll(target, claimed, { status: 'failed', errorCode: error.code });
      ctx.logger.warn({ runId: run.runId, code: error.code }, 'channel refused a message');
      return claimed.length;
    }
    // Not sent (a 429, a 5xx, a timeout): back to queued so the retry sends it.
    await settleAll(target, claimed, {
      status: 'queued',
      errorCode: error instanceof AppError ? error.code : 'SEND_FAILED',
    });
    throw error;
  }
}

async function settleAll(
  { ctx, run }: Target,
  rows: readonly OutboundRow[],
  outcome: Parameters<typeof settleOutbound>[2],
): Promise<void> {
  if (rows.length === 0) return;
  await withProject(ctx.pool, run.projectId, async (tx) => {
    for (const row of rows) await settleOutbound(tx, row.messageId, outcome);
  });
}

async function sendClaimed(
  target: Target,
  rows: readonly OutboundRow[],
): Promise<{ method: string; externalMessageId?: string }> {
  const { ctx, run, channel, event } = target;
  const conversation = event.conversation;
  switch (channel.type) {
    case 'telegram': {
      const row = rows[0]!;
      await paceTelegram(target);
      const sender = createTelegramSender({
        token: await ctx.secrets.resolve(run.projectId, channel.botToken),
        ...(channel.apiRoot ? { apiRoot: channel.apiRoot } : {}),
      });
      const sent = await sender.sendText(conversation.id, row.text, {
        parseMode: row.format,
        ...(conversation.threadId ? { threadId: conversation.threadId } : {}),
      });
      return { method: 'sendMessage', externalMessageId: sent.externalMessageId };
    }
    case 'line': {
      const sender = createLineSender({
        accessToken: await ctx.secrets.resolve(run.projectId, channel.channelAccessToken),
        ...(channel.apiBaseUrl ? { baseUrl: channel.apiBaseUrl } : {}),
      });
      const texts = rows.map((r) => r.text);
      const token = event.replyToken;
      // A reply token is single-use: only a first attempt of the first batch may spend it.
      const firstTry = rows.every((r) => r.attempts === 1);
      const isFirstBatch = rows[0]!.chunkIndex === 0 && rows[0]!.kind !== 'status';
      if (token && firstTry && isFirstBatch && Date.parse(token.expiresAt) > ctx.now() + 1000) {
        try {
          await sender.reply(token.value, texts);
          return { method: 'reply' };
        } catch (error) {
          if (!(error instanceof AppError) || error.code !== 'LINE_REPLY_TOKEN_INVALID')
            throw error;
        }
      }
      const to = conversation.kind === 'dm' ? event.sender.id : conversation.id;
      await sender.push(to, texts, rows[0]!.messageId);
      return { method: 'push' };
    }
    case 'api': {
      if (!channel.callbackUrl) return { method: 'stored' };
      const row = rows[0]!;
      await postCallback(
        channel.callbackUrl,
        {
          project_id: run.projectId,
          run_id: run.runId,
          kind: row.kind,
          chunk_index: row.chunkIndex,
          chunk_count: row.chunkCount,
          text: row.text,
        },
        row.messageId,
      );
      return { method: 'callback' };
    }
    case 'slack':
      throw new NonRetryableError('CHANNEL_NOT_SUPPORTED', 'sending to Slack is not available yet');
  }
}

/** Keeps a Telegram bot inside its published limits per chat, per group and overall. */
async function paceTelegram({ ctx, run, event }: Target): Promise<void> {
  const buckets = telegramSendBuckets(
    run.accountId,
    event.conversation.id,
    event.conversation.kind === 'group',
  );
  let wait = 0;
  for (const bucket of buckets) {
    wait = Math.max(wait, await reserveSendSlot(ctx.redis, ctx.redisPrefix, bucket));
  }
  if (wait > MAX_INLINE_WAIT_MS) {
    throw new RetryAfterError('CHANNEL_PACING', 'waiting for a send slot in this chat', wait);
  }
  if (wait > 0) await new Promise((r) => setTimeout(r, wait));
}
