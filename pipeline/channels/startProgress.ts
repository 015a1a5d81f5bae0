import { enqueueOutbound, listOutbound } from '../../db/outboundMessages.ts';
import type { Run } from '../../db/runs.ts';
import { withProject } from '../../db/withProject.ts';
import type { ChannelContract } from '../contracts/channelContract.ts';
import type { ConversationEvent } from '../contracts/conversationEvent.ts';
import type { ChannelContext } from './ChannelContext.ts';
import type { ChannelPlugin } from './ChannelPlugin.ts';
import { sendOutboundRows } from './sendOutboundRows.ts';

/**
 * Progress feedback while a run executes, on runs that may speak: where the plugin can show
 * typing, its indicator at once (Telegram chat action, LINE loading animation in a 1:1 chat),
 * through the account's cached sender; where it sends status notes (not the API, whose clients
 * follow the run's events instead), one short status message if the run is still executing
 * after the channel's `statusAfterMs`. The status message is a
 * ledger row (run, 'status', 0), so a retried execute never sends a second one. Progress is
 * best effort: its failures are logged and never fail the run.
 */
export function startProgress(
  ctx: ChannelContext,
  { run, channel, event }: { run: Run; channel: ChannelContract; event: ConversationEvent },
): { stop(): Promise<void> } {
  const plugin = ctx.channels.find(channel.type);
  if (run.live !== true || !plugin) return { stop: async () => {} };
  const warn = (error: unknown) =>
    ctx.logger.warn(
      { runId: run.runId, err: error instanceof Error ? error.message : String(error) },
      'progress feedback failed',
    );

  if (plugin.capabilities.typing && channel.progress.typingIndicator)
    void typing(ctx, run, channel, event).catch(warn);
  if (!plugin.capabilities.statusNote) return { stop: async () => {} };

  let inFlight: Promise<void> | null = null;
  const timer = setTimeout(() => {
    inFlight = sendStatus(ctx, plugin, run, channel, event).catch(warn);
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
  ctx: ChannelContext,
  run: Run,
  channel: ChannelContract,
  event: ConversationEvent,
) {
  const { sender } = await ctx.channels.sender(
    (ref) => ctx.secrets.resolve(run.projectId, ref),
    { projectId: run.projectId, accountId: run.accountId },
    channel,
  );
  await sender.typing?.({ run, account: channel, event, now: ctx.now() });
}

async function sendStatus(
  ctx: ChannelContext,
  plugin: ChannelPlugin,
  run: Run,
  channel: ChannelContract,
  event: ConversationEvent,
) {
  const format = plugin.dialect(channel);
  const rows = await withProject(ctx.pool, run.projectId, async (tx) => {
    await enqueueOutbound(
      tx,
      run,
      'status',
      plugin.format(channel.progress.statusText, channel, null),
      {
        format,
        suppressed: false,
      },
    );
    return (await listOutbound(tx, run.runId)).filter((r) => r.kind === 'status');
  });
  await sendOutboundRows({ ctx, run, channel, event }, rows);
}
