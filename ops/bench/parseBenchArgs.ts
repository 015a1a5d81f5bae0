import { parseArgs } from 'node:util';
import type { Layout } from './startSystem.ts';

/** What `npm run bench` was asked to do. */
export type BenchOptions = {
  /** Measured runs per round. @defaultValue 5000 */
  runs: number;
  /** Rounds, each a baseline and a pipeline half, alternating. @defaultValue 1 */
  rounds: number;
  /** Fixed arrival rate, runs/s; absent: a burst. */
  rate: number | undefined;
  /** @defaultValue 'one' */
  layout: Layout;
  /** Requests in flight (burst) or sockets (rate). @defaultValue 32 */
  connections: number;
  /** Jobs per stage worker (`AWOOOP_WORKER_CONCURRENCY`). @defaultValue 16 (one), 12 (per-stage) */
  concurrency: number;
  /** Unmeasured runs before each half. @defaultValue 200 */
  warmup: number;
  /** Conversations the runs are spread over; absent: one per run. */
  conversations: number | undefined;
  /** A baseline hop's write: one CTE statement, or BEGIN/UPDATE/INSERT/COMMIT. @defaultValue 'cte' */
  baselineWrite: 'cte' | 'tx';
  /** Run only one half. */
  only: 'pipeline' | 'baseline' | undefined;
  /** Where children write `--cpu-prof` profiles; absent: no profiling. */
  cpuProf: string | undefined;
  /** The most one half may take (warm-up included), s; default 120 + 50 ms a run. */
  timeoutS: number;
  database: string;
  json: boolean;
  keep: boolean;
};

const USAGE = `usage: npm run bench -- [--runs N] [--rounds K] [--rate R] [--layout one|per-stage]
  [--connections C] [--concurrency J] [--warmup W] [--conversations K] [--baseline-write cte|tx]
  [--only pipeline|baseline] [--cpu-prof DIR] [--timeout S] [--database NAME] [--json] [--keep]`;

/** Parses the bench's flags; a bad one throws with the usage. */
export function parseBenchArgs(argv: readonly string[]): BenchOptions {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      runs: { type: 'string', default: '5000' },
      rounds: { type: 'string', default: '1' },
      rate: { type: 'string' },
      layout: { type: 'string', default: 'one' },
      connections: { type: 'string', default: '32' },
      concurrency: { type: 'string' },
      warmup: { type: 'string', default: '200' },
      conversations: { type: 'string' },
      'baseline-write': { type: 'string', default: 'cte' },
      only: { type: 'string' },
      'cpu-prof': { type: 'string' },
      timeout: { type: 'string' },
      database: { type: 'string', default: 'awooop_bench' },
      json: { type: 'boolean', default: false },
      keep: { type: 'boolean', default: false },
    },
  });
  const int = (name: string, value: string | undefined, min = 1) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min)
      throw new Error(`--${name}: expected an integer >= ${min}\n${USAGE}`);
    return n;
  };
  const oneOf = <T extends string>(name: string, value: string, allowed: readonly T[]): T => {
    if (!allowed.includes(value as T))
      throw new Error(`--${name}: one of ${allowed.join(', ')}\n${USAGE}`);
    return value as T;
  };
  const layout = oneOf('layout', values.layout, ['one', 'per-stage'] as const);
  const runs = int('runs', values.runs);
  return {
    runs,
    rounds: int('rounds', values.rounds),
    rate: values.rate === undefined ? undefined : int('rate', values.rate),
    layout,
    connections: int('connections', values.connections),
    concurrency: int('concurrency', values.concurrency ?? (layout === 'one' ? '16' : '12')),
    warmup: int('warmup', values.warmup, 0),
    conversations:
      values.conversations === undefined ? undefined : int('conversations', values.conversations),
    baselineWrite: oneOf('baseline-write', values['baseline-write'], ['cte', 'tx'] as const),
    only:
      values.only === undefined
        ? undefined
        : oneOf('only', values.only, ['pipeline', 'baseline'] as const),
    cpuProf: values['cpu-prof'],
    timeoutS: values.timeout === undefined ? 120 + runs * 0.05 : int('timeout', values.timeout),
    database: values.database,
    json: values.json,
    keep: values.keep,
  };
}
