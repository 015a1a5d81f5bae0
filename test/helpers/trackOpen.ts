/** Something a test helper opened, which its test file must close before the file ends. */
export type Opened = {
  /** What it is, as the failure names it (`startPipeline awt…: the resolve worker`). */
  what: string;
  /** Whether it is still open, asked of the object itself wherever it can say. */
  isOpen(): boolean;
  /** Closes it for good once the check has failed the file, so the file's process can end. */
  forceClose(): unknown;
};

// Per test file: vitest gives each file its own module instances (isolate), so this list
// holds only what the current file's helpers opened.
const opened: Opened[] = [];

/** Registers what a helper opened; `failOnLeaks` fails the file if it is still open at the end. */
export function trackOpen(entry: Opened): void {
  opened.push(entry);
}

/**
 * What the helpers opened and the file left open, after waiting up to `graceMs` for closes
 * still in progress (an ioredis connection ends a moment after `disconnect()` returns).
 */
export async function stillOpen(graceMs = 2000): Promise<Opened[]> {
  const deadline = Date.now() + graceMs;
  let open = opened.filter((o) => o.isOpen());
  while (open.length > 0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
    open = open.filter((o) => o.isOpen());
  }
  return open;
}
