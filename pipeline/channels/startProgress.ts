import { enqueueOutbound, listOutbound } from '../../db/outboundMessages.ts';
import type { Run } from '../../db/runs.ts';
import { withProject } from '../../db/withProject.ts';
import type { ChannelContract } from '../contracts/channelContract.ts';
import type { ConversationEvent } from '../contracts/conversationEvent.ts';
import { formatForChannel } from '../sanitize/formatForChannel.ts';
import type { StageContext } from '../StageContext.ts';
import { createLineSender } from './line/createLineSender.ts';
import { sendOutboundRows } from './sendOutboundRows.ts';
import { createTelegramSender } from './telegram/createTelegramSender.ts';

/**
 * Progress feedback while a run executes, on runs that may speak: a typing indicator at once
 * (Telegram chat action, LINE loading animation in a 1:1 chat), and one short status message
 * if the run is still executing after the channel's `statusAfterMs`. The status message is a
 * ledger row (run, 'status', 0), so a retried execute never sends a second one. Progress is
 * best effort: its failures are logged and never fail the run.
 */
export function startProgress(
  ctx: StageContext,
  { run, channel, event }: { run: Run; channel: ChannelContract; event: ConversationEvent },
): { stop(): Promise<void> } {
  if (run.live !== true || channel.type === 'api' || channel.type === 'slack') {
    return { stop: async () => {} };
  }
  const warn = (error: unknown) =>
    ctx.logger.warn(
      { runId: run.runId, err: error instanceof Error ? error.message : String(error) },
      'progress feedback failed',
    );

  if (channel.progress.typingIndicator) void typing(ctx, run, channel, event).catch(warn);

  let inFlight: Promise<void> | null = null;
  const timer = setTimeout(() => {
    inFlight = sendStatus(ctx, run, channel, event).catch(warn);
  }, channel.progress.statusAfterMs);
  timer.unref();
  return {
    async stop() {
      clearTimeout(timer);
      if (inFlight) await inFlight;
    },
  };
}

async function typing(
  ctx: StageContext,
  run: Run,
  channel: ChannelContract,
  event: ConversationEvent,
) {
  const c = event.conversation;
  if (channel.type === 'telegram') {
    const sender = createTelegramSender({
      token: await ctx.secrets.resolve(run.projectId, channel.botToken),
      ...(channel.apiRoot ? { apiRoot: channel.apiRoot } : {}),
    });
    await sender.sendTyping(c.id, c.threadId);
  } else if (channel.type === 'line' && c.kind === 'dm') {
    const sender = createLineSender({
      accessToken: await ctx.secrets.resolve(run.projectId, channel.channelAccessToken),
      ...(channel.apiBaseUrl ? { baseUrl: channel.apiBaseUrl } : {}),
    });
    await sender.showLoading(event.sender.id);
  }
}

async function sendStatus(
  ctx: StageContext,
  run: Run,
  channel: ChannelContract,
  event: ConversationEvent,
) {
  const format = channel.type === 'telegram' ? channel.parseMode : 'plain';
  const rows = await withProject(ctx.pool, run.projectId, async (tx) => {
    await enqueueOutbound(
      tx,
      run,
      'status',
      formatForChannel(channel.progress.statusText, format, null),
      {
        format,
        suppressed: false,
      },
    );
    return (await listOutbound(tx, run.runId)).filter((r) => r.kind === 'status');
  });
  await sendOutboundRows({ ctx, run, channel, event }, rows);
}
