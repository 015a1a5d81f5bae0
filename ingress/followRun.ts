import type { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import type { DatabasePool } from 'slonik';
import type { ErrorCode } from '../pipeline/errorCodes.ts';
import { describeRun } from '../pipeline/runs/describeRun.ts';
import { isTerminal } from '../pipeline/contracts/runState.ts';

/** How one followed run's stream is resumed, paced and bounded. */
export type FollowOptions = {
  /** Transitions the client already has (its `Last-Event-ID`); they are not sent again. */
  after: number;
  /** Ends the stream early: the client went away, or the process is shutting down. */
  signal: AbortSignal;
  /** The longest a stream stays open before `event: timeout`. @defaultValue 600000 */
  maxMs?: number;
  /** The first and the longest wait between two reads of the run. @defaultValue [250, 2000] */
  pollMs?: readonly [number, number];
  /** Silence after which a comment line keeps proxies from closing it. @defaultValue 15000 */
  keepAliveMs?: number;
};

/**
 * Streams a run's transitions as server-sent events until the run is terminal (`event: done`
 * with its state, output and failure), the stream is at its `maxMs` (`event: timeout`; the
 * client reconnects to go on), or `signal` aborts. Each transition carries `id: <n>`, its place
 * in the run's timeline, so a client reconnecting with `Last-Event-ID: n` gets only what came
 * after. The run is read again after 250 ms, waits doubling to 2 s while nothing changes.
 * Always ends `stream`; never throws.
 */
export async function followRun(
  { pool, logger }: { pool: DatabasePool; logger: Logger },
  { projectId, runId }: { projectId: string; runId: string },
  stream: Writable,
  {
    after,
    signal,
    maxMs = 600_000,
    pollMs: [firstWait, longestWait] = [250, 2000],
    keepAliveMs = 15_000,
  }: FollowOptions,
): Promise<void> {
  const started = Date.now();
  let lastWrite = started;
  const send = (text: string) => {
    if (signal.aborted || stream.writableEnded || stream.destroyed) return;
    stream.write(text);
    lastWrite = Date.now();
  };
  const event = (name: string, data: unknown, id?: number) =>
    send(
      `${id === undefined ? '' : `id: ${id}\n`}event: ${name}\ndata: ${JSON.stringify(data)}\n\n`,
    );
  let sent = after;
  let wait = 0;
  try {
    while (!signal.aborted) {
      const view = await describeRun(pool, projectId, runId);
      const fresh = view.timeline.slice(sent);
      for (const [i, transition] of fresh.entries()) event('transition', transition, sent + i + 1);
      sent = Math.max(sent, view.timeline.length);
      if (isTerminal(view.state)) {
        event('done', { state: view.state, output: view.output, failure: view.failure });
        return;
      }
      const left = maxMs - (Date.now() - started);
      if (left <= 0) {
        event('timeout', { state: view.state });
        return;
      }
      if (Date.now() - lastWrite >= keepAliveMs) send(': keep-alive\n\n');
      wait = fresh.length > 0 || wait === 0 ? firstWait : Math.min(wait * 2, longestWait);
      // An abort (client gone, shutdown) cuts the wait short; the loop condition then ends it.
      await sleep(Math.min(wait, left), undefined, { signal }).catch(() => {});
    }
  } catch (error) {
    logger.warn({ runId, err: (error as Error).message }, 'run event stream failed');
    event('error', { code: 'STREAM_FAILED' satisfies ErrorCode });
  } finally {
    if (!stream.destroyed) stream.end();
  }
}
