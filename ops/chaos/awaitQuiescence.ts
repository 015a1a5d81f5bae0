import type { DatabasePool } from 'slonik';
import { countOpenRuns } from './readChaosRuns.ts';

/** How the wait for quiescence ended. */
export type Quiescence = {
  quiet: boolean;
  waitedMs: number;
  /** Accepted runs still open when the wait ended (0 when quiet). */
  open: number;
};

/**
 * Waits until every accepted run is COMPLETED or FAILED in Postgres and no new message has
 * reached the channel for `quietMs`, or until `timeoutMs` has passed. A read that fails (the
 * connections were just killed) counts as not yet quiet and is tried again.
 */
export async function awaitQuiescence({
  pool,
  projectId,
  runIds,
  messages,
  quietMs,
  timeoutMs,
  log,
}: {
  pool: DatabasePool;
  projectId: string;
  runIds: () => string[];
  /** How many messages the channel has received so far. */
  messages: () => number;
  quietMs: number;
  timeoutMs: number;
  log: (line: string) => void;
}): Promise<Quiescence> {
  const startedAt = Date.now();
  let seen = messages();
  let lastMessageAt = Date.now();
  let lastLogAt = 0;
  for (;;) {
    const now = Date.now();
    if (messages() !== seen) {
      seen = messages();
      lastMessageAt = now;
    }
    const open = await countOpenRuns(pool, projectId, runIds()).catch(() => Number.NaN);
    if (open === 0 && now - lastMessageAt >= quietMs) {
      return { quiet: true, waitedMs: now - startedAt, open };
    }
    if (now - startedAt > timeoutMs) return { quiet: false, waitedMs: now - startedAt, open };
    if (now - lastLogAt >= 5000) {
      lastLogAt = now;
      log(
        `draining: ${Number.isNaN(open) ? '?' : open} accepted runs open, ` +
          `${seen} messages, ${Math.round((now - lastMessageAt) / 1000)}s since the last`,
      );
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}
