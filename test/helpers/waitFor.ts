/**
 * Polls `check` until it returns a value other than undefined/false, or fails after
 * `timeoutMs` with the last value seen — for waiting on asynchronous pipeline work. The
 * default limit is generous on purpose: it only matters when something is wrong, and a loaded
 * machine (a load average of 20 on two cores) can take tens of seconds for what is otherwise
 * instant.
 */
export async function waitFor<T>(
  check: () => Promise<T | undefined | false> | T | undefined | false,
  {
    timeoutMs = 90_000,
    intervalMs = 50,
    what = 'condition',
  }: { timeoutMs?: number; intervalMs?: number; what?: string } = {},
): Promise<T> {
  const until = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    last = await check();
    if (last !== undefined && last !== false) return last as T;
    if (Date.now() > until)
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what} (last: ${JSON.stringify(last)})`,
      );
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
