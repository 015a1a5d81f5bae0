import { Stage } from '../../pipeline/contracts/runJob.ts';
import { HOPS } from './baselineHops.ts';
import { spawnChild, type BenchChild } from './spawnChild.ts';

/** Which system a round drives. */
export type SystemKind = 'pipeline' | 'baseline';
/** All of a system in one process, or one process per stage (and one for the ingress). */
export type Layout = 'one' | 'per-stage';

/** A running system: where to post, and its processes. */
export type RunningSystem = {
  port: number;
  /** The processes that run stages (whose RSS the bench reports). */
  workers: BenchChild[];
  stop(): Promise<void>;
};

/** What every process of a system is started with. */
export type SystemOptions = {
  kind: SystemKind;
  layout: Layout;
  port: number;
  /** The platform's env: DATABASE_URL, REDIS_URL, AWOOOP_REDIS_PREFIX, AWOOOP_SECRET_KEY, ... */
  env: Record<string, string>;
  /** Extra `node` flags for every child (`--cpu-prof`, ...). */
  nodeArgs?: readonly string[];
  /** A hop's write in the baseline. */
  write?: 'cte' | 'tx';
};

type Spec = { name: string; args: string[]; ready: RegExp[]; worker: boolean };

function specs({ kind, layout, write = 'cte' }: SystemOptions): Spec[] {
  if (kind === 'pipeline') {
    if (layout === 'one')
      return [
        {
          name: 'awooop',
          args: ['ops/bench/benchPlatform.ts'],
          ready: [/^web listening/, /^worker all running/],
          worker: true,
        },
      ];
    return [
      { name: 'web', args: ['ops/awooop.ts', 'web'], ready: [/^web listening/], worker: false },
      ...Stage.options.map((stage) => ({
        name: `worker-${stage}`,
        args: ['ops/awooop.ts', 'worker', stage],
        ready: [/^worker \w+ running/],
        worker: true,
      })),
    ];
  }
  const baseline = (name: string, hops: string, ingress: boolean): Spec => ({
    name,
    args: ['ops/bench/baselineProcess.ts', `--hops=${hops}`, `--write=${write}`].concat(
      ingress ? ['--ingress'] : [],
    ),
    ready: [/^baseline ready/],
    worker: hops !== 'none',
  });
  if (layout === 'one') return [baseline('baseline', 'all', true)];
  return [
    baseline('baseline-ingress', 'none', true),
    ...HOPS.map((hop) => baseline(`baseline-hop${hop}`, String(hop), false)),
  ];
}

/**
 * Starts every process of a system against the bench database and prefix and resolves once
 * each says it is ready; if one fails to start, the others are stopped again.
 */
export async function startSystem(options: SystemOptions): Promise<RunningSystem> {
  const env = { ...process.env, ...options.env, PORT: String(options.port) };
  const started = await Promise.allSettled(
    specs(options).map(async (spec) => ({
      spec,
      child: await spawnChild({
        name: spec.name,
        args: spec.args,
        env,
        ready: spec.ready,
        nodeArgs: options.nodeArgs ?? [],
      }),
    })),
  );
  const children = started.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  const stop = async () => {
    await Promise.all(children.map(({ child }) => child.stop()));
  };
  const failed = started.find((s) => s.status === 'rejected');
  if (failed) {
    await stop();
    throw failed.reason;
  }
  return {
    port: options.port,
    workers: children.filter(({ spec }) => spec.worker).map(({ child }) => child),
    stop,
  };
}
