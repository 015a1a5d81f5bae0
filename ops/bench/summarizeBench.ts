import { availableParallelism } from 'node:os';
import type { BenchOptions } from './parseBenchArgs.ts';
import type { RoundResult } from './runRound.ts';
import { median, percentile, round } from './stats.ts';

/** One system's figures over the rounds (medians). */
export type HalfSummary = {
  runs_per_s: number;
  p50_ms: number;
  p99_ms: number;
  stage_p50_ms: Record<string, number>;
  failed: number;
};

/** The JSON the bench prints with `--json`. */
export type BenchSummary = {
  runs: number;
  rounds: number;
  layout: string;
  mode: string;
  pipeline: HalfSummary | null;
  baseline: Omit<HalfSummary, 'stage_p50_ms'> | null;
  ratio: number | null;
  rss_mb: number | null;
  node: string;
  cpus: number;
};

function half(results: readonly RoundResult[]): HalfSummary | null {
  if (results.length === 0) return null;
  const stages = [...new Set(results.flatMap((r) => Object.keys(r.stageP50Ms)))];
  return {
    runs_per_s: round(median(results.map((r) => r.runsPerS))),
    p50_ms: round(median(results.map((r) => r.p50Ms))),
    p99_ms: round(median(results.map((r) => r.p99Ms))),
    stage_p50_ms: Object.fromEntries(
      stages.map((s) => [s, round(median(results.flatMap((r) => r.stageP50Ms[s] ?? [])), 2)]),
    ),
    failed: results.reduce((sum, r) => sum + r.failed + r.unfinished + r.posted.refused, 0),
  };
}

/** The medians over rounds, the ratio of the medians, and the largest stage-process RSS. */
export function summarizeBench(
  options: BenchOptions,
  results: readonly RoundResult[],
): BenchSummary {
  const pipeline = half(results.filter((r) => r.kind === 'pipeline'));
  const baselineHalf = half(results.filter((r) => r.kind === 'baseline'));
  const baseline = baselineHalf && {
    runs_per_s: baselineHalf.runs_per_s,
    p50_ms: baselineHalf.p50_ms,
    p99_ms: baselineHalf.p99_ms,
    failed: baselineHalf.failed,
  };
  const rss = results
    .filter((r) => r.kind === 'pipeline')
    .flatMap((r) => Object.values(r.rss).map((p) => p.max));
  return {
    runs: options.runs,
    rounds: options.rounds,
    layout: options.layout,
    mode: options.rate === undefined ? 'burst' : `rate ${options.rate}/s`,
    pipeline,
    baseline,
    ratio: pipeline && baseline ? round(pipeline.runs_per_s / baseline.runs_per_s, 3) : null,
    rss_mb: rss.length > 0 ? round(Math.max(...rss)) : null,
    node: process.version,
    cpus: availableParallelism(),
  };
}

const fmt = (n: number, digits = 1) => (Number.isFinite(n) ? n.toFixed(digits) : '-');

/** The human-readable report: one line per round, RSS per process, then the medians. */
export function formatBench(summary: BenchSummary, results: readonly RoundResult[]): string {
  const lines: string[] = [];
  const row = (cells: string[]) =>
    lines.push(cells.map((c, i) => c.padStart(i === 0 ? 10 : 11)).join(''));
  lines.push(
    `AwoooP bench: ${summary.runs} runs a half, ${summary.rounds} round(s), ${summary.mode}, layout ${summary.layout}, node ${summary.node}, ${summary.cpus} cpus`,
    '',
  );
  row([
    'half',
    'runs/s',
    'p50 ms',
    'p99 ms',
    'ack p50',
    'ack p99',
    'failed',
    'refused',
    'unfinished',
  ]);
  for (const r of results) {
    row([
      r.kind,
      fmt(r.runsPerS),
      fmt(r.p50Ms),
      fmt(r.p99Ms),
      fmt(percentile(r.posted.ackMs, 0.5)),
      fmt(percentile(r.posted.ackMs, 0.99)),
      String(r.failed),
      String(r.posted.refused),
      String(r.unfinished),
    ]);
    const codes = Object.entries({ ...r.failures, ...r.posted.refusals });
    if (codes.length > 0)
      lines.push(`          failures: ${codes.map(([c, n]) => `${c}=${n}`).join(' ')}`);
  }
  lines.push('', 'stage p50 (ms from the previous commit), per round:');
  for (const r of results)
    lines.push(
      `  ${r.kind.padEnd(9)} ${Object.entries(r.stageP50Ms)
        .map(([s, v]) => `${s} ${fmt(v, 2)}`)
        .join('  ')}`,
    );
  lines.push('', 'RSS MB of the stage processes (start / middle / end / max):');
  for (const r of results)
    for (const [name, v] of Object.entries(r.rss))
      lines.push(
        `  ${r.kind.padEnd(9)} ${name.padEnd(18)} ${fmt(v.start)} / ${fmt(v.middle)} / ${fmt(v.end)} / ${fmt(v.max)}`,
      );
  lines.push('', 'medians:');
  const p = summary.pipeline;
  const b = summary.baseline;
  if (b)
    lines.push(
      `  baseline  ${fmt(b.runs_per_s)} runs/s  p50 ${fmt(b.p50_ms)} ms  p99 ${fmt(b.p99_ms)} ms`,
    );
  if (p)
    lines.push(
      `  pipeline  ${fmt(p.runs_per_s)} runs/s  p50 ${fmt(p.p50_ms)} ms  p99 ${fmt(p.p99_ms)} ms`,
    );
  if (summary.mode !== 'burst')
    lines.push(
      '  (at a fixed rate, runs/s cannot exceed the offered rate: a half that keeps up shows the',
      '   rate itself, so compare latencies; a half below it is saturated and its backlog grows)',
    );
  if (p && b)
    lines.push(
      `  ratio     ${fmt(summary.ratio ?? NaN, 3)} (throughput)   p99 ${fmt(p.p99_ms / b.p99_ms, 2)}x the baseline's`,
    );
  if (summary.rss_mb !== null)
    lines.push(`  rss       ${fmt(summary.rss_mb)} MB max of a stage process`);
  return lines.join('\n');
}
