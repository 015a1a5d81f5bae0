import pg from 'pg';
import type { Logger } from 'pino';
import type { ChannelManager } from '../pipeline/channelManager/createChannelManager.ts';

/** The advisory lock that makes one `channels` process the one holding connections. */
const LEADER_LOCK = 0x61776f6f; // 'awoo'

/** A running `channels` loop. */
export type ChannelsLoop = {
  /** Whether this process holds the lock (and so the accounts' connections). */
  leading(): boolean;
  close(): Promise<void>;
};

/**
 * Runs the ChannelManager: reconciles at once, whenever Postgres notifies `awooop_channels`
 * (an activation or rollback of a channel contract, an operator's start / stop / restart:
 * triggers of migration 0011), and every `intervalMs` besides, which also flushes the
 * counters — the poll catches a notification sent while the listener was reconnecting.
 * Only the process holding a session advisory lock on its listening connection manages
 * accounts, so a second `channels` process stands by instead of opening a second connection
 * per account. When the leader's listening connection drops, its lock goes with it, but its
 * accounts' connections stay open while it reconnects and asks for the lock again at once:
 * only if another process took the lock meanwhile does it close them. Closing on every blip
 * would lose messages — Discord replays nothing sent between two sessions — while two
 * processes holding one account for a moment is harmless: intake is deduped on each message's
 * own id. While the lock is not held, nothing is reconciled (nothing opened or closed).
 */
export async function startChannels({
  manager,
  listenUrl,
  intervalMs,
  logger,
}: {
  manager: ChannelManager;
  /** A connection URL for LISTEN and the lock (the process's own login). */
  listenUrl: string;
  intervalMs: number;
  logger: Logger;
}): Promise<ChannelsLoop> {
  let client: pg.Client | null = null;
  let leader = false;
  /** Leading, but the lock went with a lost connection and is not held again yet. */
  let lockLost = false;
  let ticking: Promise<void> | null = null;
  let closed = false;
  let timer: NodeJS.Timeout | undefined;

  const reconcile = async (why: string) => {
    if (!leader || lockLost || closed) return;
    try {
      const report = await manager.reconcile();
      logger.debug({ why, ...report }, 'channels reconciled');
    } catch (error) {
      logger.warn({ why, err: (error as Error).message }, 'channels reconcile failed');
    }
  };

  const connect = async () => {
    const c = new pg.Client({ connectionString: listenUrl, application_name: 'awooop-channels' });
    c.on('error', (error) => {
      logger.warn({ err: error.message }, 'channels listener connection lost');
    });
    c.on('end', () => {
      if (client !== c) return;
      client = null;
      if (leader) {
        // The lock went with the connection: take it again before anyone else does, and keep
        // the accounts' connections open meanwhile.
        lockLost = true;
        void tick();
      }
    });
    await c.connect();
    c.on('notification', () => void reconcile('notified'));
    await c.query('LISTEN awooop_channels');
    client = c;
  };

  // One at a time: a lost connection asks for a tick at once, beside the interval's.
  const tick = () =>
    (ticking ??= (async () => {
      try {
        await tickOnce();
      } finally {
        ticking = null;
      }
    })());
  const tickOnce = async () => {
    if (closed) return;
    try {
      if (!client) await connect();
      if ((!leader || lockLost) && client) {
        const { rows } = await client.query<{ got: boolean }>(
          'SELECT pg_try_advisory_lock($1) AS got',
          [LEADER_LOCK],
        );
        const got = rows[0]?.got === true;
        if (got && !leader) logger.info('channels: this process manages the channel accounts');
        if (got && lockLost) logger.info('channels: the lock is held again; connections kept');
        if (!got && lockLost) {
          // Another process leads now: its connections take over from ours.
          logger.warn('channels: another process took the lock; closing the connections');
          leader = false;
          await manager.stopAll('another channels process leads').catch(() => undefined);
        }
        if (got) leader = true;
        lockLost = false;
      }
    } catch (error) {
      logger.warn({ err: (error as Error).message }, 'channels listener could not connect');
      client?.end().catch(() => undefined);
      client = null;
    }
    await reconcile('interval');
  };

  const loop = async () => {
    await tick();
    if (!closed) timer = setTimeout(() => void loop(), intervalMs);
  };
  await loop();

  return {
    leading: () => leader,
    async close() {
      closed = true;
      clearTimeout(timer);
      const c = client;
      client = null;
      await ticking;
      if (leader) await manager.stopAll('channels process stopped');
      leader = false;
      await c?.end().catch(() => undefined);
    },
  };
}
