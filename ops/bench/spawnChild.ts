import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

/** The repository root: children run from there, as the Procfile's commands do. */
export const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** A process the bench started, and how to end it. */
export type BenchChild = {
  name: string;
  pid: number;
  /** SIGTERM, then SIGKILL if it has not exited within `graceMs`. */
  stop(graceMs?: number): Promise<void>;
  /** Log lines at warn level or above it printed (the first few are passed on to stderr). */
  warnings(): number;
};

/** How many of a child's warnings are shown before they are only counted. */
const SHOWN_WARNINGS = 5;

/**
 * Starts `node <args>` from the repository root with `env`, and resolves once every `ready`
 * pattern has matched a line of its output (pino JSON lines are matched on `msg`). Its warnings
 * and errors go to our stderr, the first few in full; a child that exits before it is ready,
 * or is not ready within `timeoutMs`, is an error that quotes its last lines.
 */
export async function spawnChild({
  name,
  args,
  env,
  ready,
  nodeArgs = [],
  timeoutMs = 30_000,
}: {
  name: string;
  args: readonly string[];
  env: NodeJS.ProcessEnv;
  ready: readonly RegExp[];
  nodeArgs?: readonly string[];
  timeoutMs?: number;
}): Promise<BenchChild> {
  const child = spawn(process.execPath, [...nodeArgs, ...args], {
    cwd: ROOT,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = once(child, 'exit');
  let alive = true;
  void exited.then(() => {
    alive = false;
  });
  const pending = new Set(ready);
  const tail: string[] = [];
  let warnings = 0;
  let markReady = () => {};
  const isReady = new Promise<void>((resolve) => (markReady = resolve));
  const onLine = (line: string) => {
    tail.push(line);
    if (tail.length > 20) tail.shift();
    let msg = line;
    let level = 30;
    try {
      const parsed = JSON.parse(line) as { msg?: unknown; level?: unknown };
      if (typeof parsed.msg === 'string') msg = parsed.msg;
      if (typeof parsed.level === 'number') level = parsed.level;
    } catch {
      level = 40; // not a log line: a crash trace or a library printing on its own
    }
    for (const pattern of pending) if (pattern.test(msg)) pending.delete(pattern);
    if (pending.size === 0) markReady();
    if (level >= 40 && ++warnings <= SHOWN_WARNINGS)
      process.stderr.write(`[${name}] ${line.slice(0, 500)}\n`);
  };
  createInterface({ input: child.stdout }).on('line', onLine);
  createInterface({ input: child.stderr }).on('line', onLine);

  const stop = async (graceMs = 20_000) => {
    if (!alive) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    await exited;
    clearTimeout(timer);
  };
  let timer: NodeJS.Timeout | undefined;
  const outcome = await Promise.race([
    isReady.then(() => 'ready' as const),
    exited.then(() => 'exited' as const),
    new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), timeoutMs))),
  ]);
  clearTimeout(timer);
  if (outcome !== 'ready') {
    await stop(2000);
    throw new Error(
      `${name} ${outcome === 'exited' ? 'exited' : `was not ready in ${timeoutMs} ms`} before it was ready; its last lines:\n${tail.join('\n')}`,
    );
  }
  return { name, pid: child.pid!, stop, warnings: () => warnings };
}

/** A process's resident set size in MB (Linux `/proc`), or NaN once it has gone. */
export async function readRssMb(pid: number): Promise<number> {
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    const kb = /^VmRSS:\s+(\d+)\s+kB/m.exec(status)?.[1];
    return kb === undefined ? Number.NaN : Number(kb) / 1024;
  } catch {
    return Number.NaN;
  }
}
