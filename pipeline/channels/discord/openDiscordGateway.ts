import { WebSocketManager, WebSocketShardEvents, type SessionInfo } from '@discordjs/ws';
import {
  GatewayDispatchEvents,
  GatewayIntentBits,
  type GatewayDispatchPayload,
} from 'discord-api-types/v10';
import type { AccountOf, ConnectionSink, HeldConnection } from '../ChannelPlugin.ts';
import { AppError, NonRetryableError } from '../../errors.ts';
import { createDiscordSender, mapDiscordError } from './createDiscordSender.ts';
import { normalizeDiscordMessage } from './normalizeDiscordMessage.ts';

/**
 * What the bot asks the Gateway for: messages in guild channels (and their threads) and in
 * DMs. MESSAGE_CONTENT (a privileged intent) is not needed: Discord sends the content of a
 * message that mentions the bot, and of every DM, without it.
 */
export const DISCORD_INTENTS = GatewayIntentBits.GuildMessages | GatewayIntentBits.DirectMessages;

/** Waits between tries of a durable write that failed (the database away): 1 s doubling to 30 s. */
const ACCEPT_RETRY_MS = [1000, 2000, 4000, 8000, 16_000, 30_000] as const;

/** A WebSocketManager whose Gateway URL can be set (a local fake) instead of Discord's. */
class DiscordGatewayManager extends WebSocketManager {
  readonly #gatewayUrl: string | undefined;
  constructor(options: ConstructorParameters<typeof WebSocketManager>[0], gatewayUrl?: string) {
    super(options);
    this.#gatewayUrl = gatewayUrl;
  }
  override async fetchGatewayInformation(force = false) {
    const info = await super.fetchGatewayInformation(force);
    return this.#gatewayUrl === undefined ? info : { ...info, url: this.#gatewayUrl };
  }
}

/** The longest a stop waits for the Gateway library to close its shards. */
const STOP_WAIT_MS = 5000;

/**
 * Opens a Discord account's Gateway connection with `@discordjs/ws` (IDENTIFY, heartbeats,
 * RESUME after a drop or a RECONNECT, a new IDENTIFY after an INVALID_SESSION: the library's
 * work), one shard per Discord's recommendation, and hands each MESSAGE_CREATE worth answering
 * ({@link normalizeDiscordMessage}) to `sink.messages`, one at a time in the order received.
 *
 * Nothing read is lost to a drop: the sequence the library resumes from is held back to the
 * last dispatch before the oldest message not yet durable, so Discord replays any message
 * still being written; the replay is keyed on the same message id, so it finds its run and
 * makes none. A durable write that fails (Postgres away) is tried again, 1 s doubling to 30 s,
 * until it succeeds or the connection is stopped, with the account reported `error` meanwhile;
 * one refused for what it is (a `NonRetryableError`) is reported `error` and not tried again.
 * The session lives only in this connection, so a process that dies reconnects with a new
 * IDENTIFY and Discord does not replay what it sent while no connection was up.
 *
 * Resolves once Discord's `GET /gateway/bot` answered (a bad token or an unreachable REST API
 * throws: `CHANNEL_REJECTED`, `CHANNEL_UNAVAILABLE`); `sink.state('running')` follows READY or
 * RESUMED, `reconnecting` each drop, `error` a failure the library cannot recover from (a
 * token Discord refuses, intents it disallows).
 */
export async function openDiscordGateway(
  account: AccountOf<'discord'>,
  token: string,
  sink: ConnectionSink,
): Promise<HeldConnection> {
  const { rest } = createDiscordSender({ token, apiBaseUrl: account.apiBaseUrl });
  const sessions = new Map<number, SessionInfo>();
  /** Per shard, the sequence numbers of messages read but not yet durable, in order. */
  const pending = new Map<number, { sessionId: string; seqs: number[] }>();
  let botUserId: string | undefined;
  let stopped = false;
  let chain: Promise<void> = Promise.resolve();
  const wake = new Set<() => void>();

  const manager = new DiscordGatewayManager(
    {
      token,
      intents: DISCORD_INTENTS,
      rest,
      retrieveSessionInfo(shardId) {
        const info = sessions.get(shardId);
        if (!info) return null;
        const held = pending.get(shardId);
        const oldest = held?.sessionId === info.sessionId ? held.seqs[0] : undefined;
        return oldest === undefined || oldest > info.sequence
          ? info
          : { ...info, sequence: oldest - 1 };
      },
      updateSessionInfo(shardId, info) {
        if (info) sessions.set(shardId, info);
        else sessions.delete(shardId);
      },
    },
    account.gatewayUrl,
  );

  manager.on(WebSocketShardEvents.Dispatch, (payload: GatewayDispatchPayload, shardId: number) => {
    if (stopped) return;
    if (payload.t === GatewayDispatchEvents.Ready) {
      botUserId = payload.d.user.id;
      sink.state('running');
      return;
    }
    if (payload.t === GatewayDispatchEvents.Resumed) {
      sink.state('running');
      return;
    }
    if (payload.t !== GatewayDispatchEvents.MessageCreate) return;
    const sessionId = sessions.get(shardId)?.sessionId ?? '';
    let held = pending.get(shardId);
    if (held?.sessionId !== sessionId) {
      held = { sessionId, seqs: [] };
      pending.set(shardId, held);
    }
    const seqs = held.seqs;
    seqs.push(payload.s);
    chain = chain.then(async () => {
      try {
        await accept(payload.d);
      } finally {
        seqs.splice(seqs.indexOf(payload.s), 1);
      }
    });
  });
  manager.on(WebSocketShardEvents.Closed, () => {
    if (!stopped) sink.state('reconnecting');
  });
  manager.on(WebSocketShardEvents.Error, (error: Error) => {
    if (!stopped) sink.state('error', { code: 'CHANNEL_REJECTED', message: error.message });
  });

  /**
   * Makes one message durable, trying again while that fails. Harmless twice (a replay after
   * RESUME, a retry after a lost commit): the sink keys the event on the Discord message id,
   * so a second accept finds the run and makes none.
   */
  async function accept(data: unknown): Promise<void> {
    let inbound;
    try {
      inbound = normalizeDiscordMessage(data, { botUserId, media: account.media });
    } catch {
      // Not a message object: nothing in it could be answered.
      return;
    }
    if (inbound === null) return;
    for (let attempt = 0; !stopped; attempt += 1) {
      try {
        await sink.messages({ events: [inbound], ignored: 0 });
        if (attempt > 0) sink.state('running');
        return;
      } catch (error) {
        sink.state('error', {
          code: error instanceof AppError ? error.code : 'DATABASE_UNAVAILABLE',
          message: error instanceof Error ? error.message : String(error),
        });
        // Refused for what it is (an event the schema rejects): no later try would take it.
        if (error instanceof NonRetryableError) return;
        const ms = ACCEPT_RETRY_MS[Math.min(attempt, ACCEPT_RETRY_MS.length - 1)]!;
        await new Promise<void>((resolve) => {
          const timer = setTimeout(done, ms);
          function done() {
            clearTimeout(timer);
            wake.delete(done);
            resolve();
          }
          wake.add(done);
        });
      }
    }
  }

  try {
    await manager.fetchGatewayInformation();
  } catch (error) {
    throw mapDiscordError(error, 'gatewayBot', token);
  }
  void manager.connect().catch((error: unknown) => {
    if (!stopped) {
      sink.state('error', {
        code: 'CHANNEL_UNAVAILABLE',
        message: error instanceof Error ? error.message : String(error),
      });
    }
  });

  let stopping: Promise<void> | undefined;
  return {
    // Harmless twice: the second call gets the first one's promise.
    stop: () =>
      (stopping ??= (async () => {
        stopped = true;
        for (const done of [...wake]) done();
        // Bounded: the library's destroy can wait on a shard still connecting (an IDENTIFY
        // held back by its throttle); nothing reaches the sink once `stopped` is set.
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([
          Promise.resolve(manager.destroy({ reason: 'account stopped' })).catch(() => undefined),
          new Promise<void>((resolve) => (timer = setTimeout(resolve, STOP_WAIT_MS))),
        ]).finally(() => clearTimeout(timer));
        await chain;
      })()),
  };
}
