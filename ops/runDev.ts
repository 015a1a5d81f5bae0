import { spawn, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { ensureDatabase, migrate } from '../db/migrate.ts';
import { createLogger } from './createLogger.ts';
import { EMBEDDED_DATA_FOLDER, startProjectPostgres } from './embeddedPostgres.ts';
import type { Config } from './loadConfig.ts';
import { onShutdown } from './onShutdown.ts';
import { waitForReady } from './waitForReady.ts';
import { webAddress } from './webAddress.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** One `name: command` line of the Procfile. */
export type ProcessType = { name: string; command: string };

/** Parses a Procfile: `name: command` per line, `#` comments and blank lines ignored. */
export function parseProcfile(text: string): ProcessType[] {
  return text
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line && !line.startsWith('#'))
    .map((line) => {
      const match = /^([A-Za-z0-9_-]+):\s*(.+)$/.exec(line);
      if (!match) throw new Error(`Procfile: cannot read line ${JSON.stringify(line)}`);
      return { name: match[1]!, command: match[2]! };
    });
}

/**
 * `npm start`: migrates, then runs every Procfile process type as a child under one
 * supervisor, restarting any that exits (with backoff), until SIGTERM or SIGINT, which it
 * passes on before exiting. The children run exactly what a Procfile host would run.
 * It says "AwoooP is starting" before anything else and "AwoooP is running" only
 * when the web process's `/readyz` answers 200 (Postgres, Redis and migrations in order).
 * With no DATABASE_URL it first starts an embedded Postgres (ops/embeddedPostgres.ts) and
 * stops it last, after the children.
 */
export async function runDev(config: Config): Promise<number> {
  const logger = createLogger({ level: config.LOG_LEVEL, name: 'dev' });
  const types = parseProcfile(await readFile(`${ROOT}/Procfile`, 'utf8'));
  const names = types.map((t) => t.name).join(', ');
  logger.info(`AwoooP is starting (processes: ${names})`);
  // No DATABASE_URL: an embedded Postgres from the project's data folder, for this
  // supervisor's lifetime; its URL goes to every child (each derives its login's URL from it).
  const embedded =
    config.DATABASE_URL === undefined
      ? await startProjectPostgres((line) => logger.debug(line))
      : undefined;
  const databaseUrl = embedded ? embedded.url('awooop') : config.DATABASE_URL!;
  if (embedded) {
    logger.info(
      { port: embedded.port, dataFolder: EMBEDDED_DATA_FOLDER },
      `embedded Postgres on 127.0.0.1:${embedded.port} (data in ${EMBEDDED_DATA_FOLDER})`,
    );
  }
  const env = { ...process.env, DATABASE_URL: databaseUrl };
  try {
    if (await ensureDatabase(databaseUrl)) logger.info('created the database');
    await migrate(databaseUrl, { log: (line) => logger.info(line) });
  } catch (error) {
    await embedded?.stop();
    throw error;
  }
  const children = new Map<string, ChildProcess>();
  let stopping = false;

  const start = (type: ProcessType, failures: number) => {
    // the same Node that runs the supervisor runs the children (Node 24 from node_modules)
    const command = type.command.replace(/^node\s/, `${JSON.stringify(process.execPath)} `);
    const child = spawn('sh', ['-c', `exec ${command}`], {
      cwd: ROOT,
      stdio: ['ignore', 'inherit', 'inherit'],
      env,
    });
    const startedAt = Date.now();
    children.set(type.name, child);
    logger.info({ process: type.name, pid: child.pid }, `started ${type.name}`);
    child.on('exit', (code, signal) => {
      children.delete(type.name);
      if (stopping) return;
      const nextFailures = Date.now() - startedAt > 30_000 ? 0 : failures + 1;
      const delay = Math.min(30_000, 500 * 2 ** nextFailures);
      logger.warn(
        { process: type.name, code, signal, restartInMs: delay },
        `${type.name} exited; restarting`,
      );
      setTimeout(() => {
        if (!stopping) start(type, nextFailures);
      }, delay);
    });
  };
  for (const type of types) start(type, 0);
  // "running" only once the web process answers ready: spawned is not listening, and on a
  // loaded machine the gap is a minute.
  const polling = new AbortController();
  const address = webAddress(config.HOST);
  const readyUrl = `http://${address}:${config.PORT}/readyz`;
  const shown = address === '127.0.0.1' ? 'localhost' : address;
  void waitForReady(readyUrl, {
    signal: polling.signal,
    onWaiting: (last) => logger.warn({ readyz: last }, `AwoooP is not ready yet: ${last}`),
  }).then((ready) => {
    if (ready) logger.info(`AwoooP is running: http://${shown}:${config.PORT} (${names})`);
  });

  await onShutdown(
    logger,
    async () => {
      stopping = true;
      polling.abort();
      const exits = [...children.values()].map(
        (child) => new Promise((resolve) => child.once('exit', resolve)),
      );
      for (const child of children.values()) child.kill('SIGTERM');
      // A child past its own shutdown deadline (a worker's is 15 s) is killed rather than
      // left running without its supervisor.
      const straggler = setTimeout(() => {
        for (const child of children.values()) child.kill('SIGKILL');
      }, 18_000);
      await Promise.all(exits);
      clearTimeout(straggler);
      // after the children, which hold connections to it until they exit
      await embedded?.stop();
    },
    { deadlineMs: 20_000 },
  );
  return 0;
}
