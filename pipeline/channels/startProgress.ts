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

/** Typing calls of one account a process keeps in flight at most; past them it sends none. */
const TYPING_IN_FLIGHT_MAX = 2;
/** A typing call slower than this (the indicator shows ~5 s) marks the account's API slow. */
const TYPING_SLOW_MS = 3000;
/** How long an account whose typing call was slow or failed is sent none. */
const TYPING_QUIET_MS = 30_000;

/**
 * The typing indicator, skipped (not queued) while the account's API is slow: at most
 * {@link TYPING_IN_FLIGHT_MAX} calls in flight per account and process, and none for
 * {@link TYPING_QUIET_MS} after one took longer than {@link TYPING_SLOW_MS} or failed. It is
 * sent on every execute attempt and bounded by no share (it is cosmetic), so without this a
 * hung Bot API held a socket open per attempt of every run of the account until the sender's
 * timeout: thousands a minute, whose timers and sockets slowed every tenant's runs.
 */
async function typing(
  ctx: ChannelContext,
  run: Run,
  channel: ChannelContract,
  event: ConversationEvent,
) {
  const built = await ctx.channels.sender(
    (ref) => ctx.secrets.resolve(run.projectId, ref),
    { projectId: run.projectId, accountId: run.accountId },
    channel,
  );
  const gate = built.typing;
  const started = Date.now();
  if (!built.sender.typing || gate.inFlight >= TYPING_IN_FLIGHT_MAX || started < gate.quietUntil)
    return;
  gate.inFlight += 1;
  const slow = setTimeout(() => {
    gate.quietUntil = Date.now() + TYPING_QUIET_MS;
  }, TYPING_SLOW_MS);
  slow.unref();
  try {
    await built.sender.typing({ run, account: channel, event, now: ctx.now() });
  } catch (error) {
    gate.quietUntil = Date.now() + TYPING_QUIET_MS;
    throw error;
  } finally {
    clearTimeout(slow);
    gate.inFlight -= 1;
  }
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
