import { setTimeout as sleep } from 'node:timers/promises';

/** Options of {@link waitForReady}. */
export type WaitForReadyOptions = {
  /** Stops the polling; the promise then resolves `false`. */
  signal: AbortSignal;
  /**
   * Pause between two polls.
   * @defaultValue 500
   */
  intervalMs?: number;
  /** Called about every `reportEveryMs` while not ready, with the last answer or error. */
  onWaiting?: (last: string) => void;
  /**
   * How often `onWaiting` is called.
   * @defaultValue 30000
   */
  reportEveryMs?: number;
};

/**
 * Polls a `/readyz` URL until it answers 200, however long that takes (a loaded machine takes
 * a minute to start every process). Resolves `true` once ready, `false` if aborted first.
 */
export async function waitForReady(
  url: string,
  { signal, intervalMs = 500, onWaiting, reportEveryMs = 30_000 }: WaitForReadyOptions,
): Promise<boolean> {
  let reportedAt = Date.now();
  while (!signal.aborted) {
    let last: string;
    try {
      const res = await fetch(url, {
        signal: AbortSignal.any([signal, AbortSignal.timeout(5000)]),
      });
      if (res.status === 200) return true;
      last = `${res.status} ${(await res.text()).slice(0, 300)}`;
    } catch (error) {
      const cause = (error as { cause?: { code?: unknown } }).cause;
      last = typeof cause?.code === 'string' ? cause.code : String(error);
    }
    if (onWaiting && Date.now() - reportedAt >= reportEveryMs) {
      reportedAt = Date.now();
      onWaiting(last);
    }
    await sleep(intervalMs, undefined, { signal }).catch(() => {});
  }
  return false;
}
