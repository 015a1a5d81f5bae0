import pg from 'pg';
import { Stage } from '../../pipeline/contracts/runJob.ts';
import { databaseUrl } from './prepareChaosDatabase.ts';
import type { PrivateRedis } from './startPrivateRedis.ts';
import type { Supervisor } from './startSupervisor.ts';

/** One fault the run injected. */
export type FaultRecord = {
  /** Seconds since the faults started. */
  atS: number;
  kind:
    | 'worker_killed'
    | 'redis_restarted'
    | 'redis_flushed'
    | 'pg_connections_killed'
    | 'gateway_dropped';
  detail: string;
  /** Set when the fault could not be injected. */
  error?: string;
};

/** Faults being injected; `stop` cancels what is still to come and waits for what is running. */
export type FaultInjector = { faults: FaultRecord[]; stop(): Promise<void> };

/** What {@link injectFaults} breaks, and when. */
export type FaultOptions = {
  supervisor: Supervisor;
  redis: PrivateRedis;
  /** The chaos database, whose connections are terminated once. */
  database: string;
  durationMs: number;
  /** Milliseconds between two worker kills; 0 for none. */
  killEveryMs: number;
  /** Restart Redis, FLUSHALL it and kill the Postgres connections, once each. */
  infra: boolean;
  random: () => number;
  /**
   * Cuts the Discord Gateway's connection without a close frame (a network drop), so the
   * channels process must RESUME and the Gateway replays what followed its last sequence.
   */
  dropGateway?: () => string;
  log: (line: string) => void;
};

const STAGES = new Set<string>(Stage.options);

/**
 * While the load runs: SIGKILLs a random stage worker every `killEveryMs` (the supervisor
 * restarts it), and once each restarts Redis (at a quarter of the run; no persistence, so
 * everything in it is gone), runs FLUSHALL (at half) and terminates every Postgres backend of
 * the chaos database (at 70 %); with `dropGateway`, cuts the Discord Gateway's connection
 * three times (at 15, 40 and 85 %). Postgres itself is shared and never restarted.
 */
export function injectFaults(o: FaultOptions): FaultInjector {
  const faults: FaultRecord[] = [];
  const startedAt = Date.now();
  const running = new Set<Promise<void>>();
  const timers: NodeJS.Timeout[] = [];

  const inject = (kind: FaultRecord['kind'], act: () => Promise<string>) => {
    const p = (async () => {
      const atS = Math.round((Date.now() - startedAt) / 100) / 10;
      try {
        const detail = await act();
        faults.push({ atS, kind, detail });
        o.log(`fault at ${atS}s: ${kind} ${detail}`);
      } catch (error) {
        const message = error instanceof Error ? error.message : String(error);
        faults.push({ atS, kind, detail: '', error: message });
        o.log(`fault at ${atS}s: ${kind} FAILED: ${message}`);
      }
    })();
    running.add(p);
    void p.finally(() => running.delete(p));
  };
  const at = (fraction: number, kind: FaultRecord['kind'], act: () => Promise<string>) => {
    timers.push(setTimeout(() => inject(kind, act), o.durationMs * fraction));
  };

  if (o.killEveryMs > 0) {
    const tick = setInterval(() => {
      if (Date.now() - startedAt > o.durationMs - 1000) return;
      inject('worker_killed', async () => {
        const workers = (await o.supervisor.children()).filter((c) => STAGES.has(c.type));
        const victim = workers[Math.floor(o.random() * workers.length)];
        if (!victim) throw new Error('no stage worker is running (all restarting)');
        process.kill(victim.pid, 'SIGKILL');
        return `${victim.type} pid ${victim.pid}`;
      });
    }, o.killEveryMs);
    timers.push(tick);
  }
  if (o.infra) {
    at(0.25, 'redis_restarted', async () => {
      const downMs = 1000;
      await o.redis.restart(downMs);
      return `port ${o.redis.port}, down ${downMs} ms, all data gone`;
    });
    at(0.5, 'redis_flushed', async () => {
      await o.redis.flushAll();
      return 'FLUSHALL';
    });
    if (o.dropGateway) {
      const drop = o.dropGateway;
      for (const fraction of [0.15, 0.4, 0.85]) {
        at(fraction, 'gateway_dropped', () => Promise.resolve(drop()));
      }
    }
    at(0.7, 'pg_connections_killed', async () => {
      const n = await terminateBackends(o.database);
      return `${n} backends of ${o.database} terminated`;
    });
  }

  return {
    faults,
    async stop() {
      for (const t of timers) clearTimeout(t);
      while (running.size > 0) await Promise.allSettled([...running]);
    },
  };
}

/** Terminates every connection to `database` but this one; returns how many. */
async function terminateBackends(database: string): Promise<number> {
  const admin = new pg.Client({ connectionString: databaseUrl('postgres') });
  await admin.connect();
  try {
    const result = await admin.query<{ terminated: boolean }>(
      `SELECT pg_terminate_backend(pid) AS terminated FROM pg_stat_activity
        WHERE datname = $1 AND pid <> pg_backend_pid()`,
      [database],
    );
    return result.rows.filter((r) => r.terminated).length;
  } finally {
    await admin.end();
  }
}
