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
 * per account; when the leader's connection drops, its lock goes with it and a standby takes
 * over at its next tick.
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
  let closed = false;
  let timer: NodeJS.Timeout | undefined;

  const reconcile = async (why: string) => {
    if (!leader || closed) return;
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
        // The lock went with the connection: another process may lead now.
        leader = false;
        void manager.stopAll('listener connection lost').catch(() => undefined);
      }
    });
    await c.connect();
    c.on('notification', () => void reconcile('notified'));
    await c.query('LISTEN awooop_channels');
    client = c;
  };

  const tick = async () => {
    if (closed) return;
    try {
      if (!client) await connect();
      if (!leader && client) {
        const { rows } = await client.query<{ got: boolean }>(
          'SELECT pg_try_advisory_lock($1) AS got',
          [LEADER_LOCK],
        );
        leader = rows[0]?.got === true;
        if (leader) logger.info('channels: this process manages the channel accounts');
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
      if (leader) await manager.stopAll('channels process stopped');
      leader = false;
      await c?.end().catch(() => undefined);
    },
  };
}
