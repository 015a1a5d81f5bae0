import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { parseProcfile } from '../runDev.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const run = promisify(execFile);

/** One process the supervisor runs, as `ps` shows it. */
export type ChildInfo = { pid: number; type: string };

/** `node ops/awooop.ts dev` running the Procfile, as a chaos run drives it. */
export type Supervisor = {
  pid: number;
  /** The supervisor's live children, typed by their command line (`web`, `execute`, ...). */
  children(): Promise<ChildInfo[]>;
  /** Resolves once every Procfile process runs and the web process answers /healthz. */
  ready(timeoutMs: number): Promise<void>;
  /** SIGTERM to the supervisor (it stops its children), SIGKILL for whatever outlives `graceMs`. */
  stop(graceMs: number): Promise<void>;
};

const TYPE_OF = /ops\/awooop\.ts (web|sweeper|channels|worker (\w+))\s*$/;

/**
 * Spawns the dev supervisor with `env` (its own database, Redis, port), its output and its
 * children's appended to `logFile`. The supervisor restarts any child that exits.
 */
export function startSupervisor({
  env,
  logFile,
  port,
}: {
  env: NodeJS.ProcessEnv;
  logFile: string;
  port: number;
}): Supervisor {
  const fd = openSync(logFile, 'a');
  const child = spawn(process.execPath, ['ops/awooop.ts', 'dev'], {
    cwd: ROOT,
    env,
    stdio: ['ignore', fd, fd],
  });
  closeSync(fd);
  if (child.pid === undefined) throw new Error('could not start the dev supervisor');
  const pid = child.pid;
  const exited = once(child, 'exit');
  const expected = parseProcfile(readFileSync(`${ROOT}/Procfile`, 'utf8')).length;

  const children = async (): Promise<ChildInfo[]> => {
    // ps exits 1 when the supervisor has no children at the moment
    const { stdout } = await run('ps', ['-o', 'pid=,args=', '--ppid', String(pid)]).catch(
      (error: { stdout?: string }) => ({ stdout: error.stdout ?? '' }),
    );
    return stdout.split('\n').flatMap((line) => {
      const match = /^\s*(\d+)\s+(.*)$/.exec(line);
      const type = match && TYPE_OF.exec(match[2]!);
      return match && type ? [{ pid: Number(match[1]), type: type[2] ?? type[1]! }] : [];
    });
  };

  return {
    pid,
    children,
    async ready(timeoutMs) {
      const until = Date.now() + timeoutMs;
      for (;;) {
        if (child.exitCode !== null) throw new Error('the dev supervisor exited at start');
        const types = new Set((await children()).map((c) => c.type));
        const healthy =
          types.size >= expected &&
          (await fetch(`http://127.0.0.1:${port}/healthz`, { signal: AbortSignal.timeout(1000) })
            .then((r) => r.ok)
            .catch(() => false));
        if (healthy) return;
        if (Date.now() > until) {
          throw new Error(`the platform was not up within ${timeoutMs} ms (see ${logFile})`);
        }
        await new Promise((r) => setTimeout(r, 250));
      }
    },
    async stop(graceMs) {
      const last = await children();
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = new Promise((r) => setTimeout(r, graceMs));
        await Promise.race([exited, timer]);
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      }
      // Children it could not stop in time, and any it started after we looked.
      for (const c of [...last, ...(await children())]) {
        if (await isStill(c)) process.kill(c.pid, 'SIGKILL');
      }
    },
  };
}

/** Whether `pid` still runs the same AwoooP process (not a pid reused since). */
async function isStill(c: ChildInfo): Promise<boolean> {
  const { stdout } = await run('ps', ['-o', 'args=', '-p', String(c.pid)]).catch(() => ({
    stdout: '',
  }));
  const type = TYPE_OF.exec(stdout.trim());
  return type !== null && (type[2] ?? type[1]) === c.type;
}
