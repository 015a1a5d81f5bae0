import type { BenchChild } from './spawnChild.ts';
import { readRssMb } from './spawnChild.ts';

/** RSS of each stage process at the round's start, middle and end, and the most seen, in MB. */
export type RssReport = Record<string, { start: number; middle: number; end: number; max: number }>;

/**
 * Samples the RSS of `processes` every `everyMs` until stopped, keeping the maximum, and takes
 * the named readings (`start`, `middle`, `end`) when asked.
 */
export function sampleRss(processes: readonly BenchChild[], everyMs = 1000) {
  const report: RssReport = Object.fromEntries(
    processes.map((p) => [p.name, { start: NaN, middle: NaN, end: NaN, max: 0 }]),
  );
  const sample = async () => {
    const readings = await Promise.all(processes.map((p) => readRssMb(p.pid)));
    processes.forEach((p, i) => {
      const mb = readings[i]!;
      if (Number.isFinite(mb)) report[p.name]!.max = Math.max(report[p.name]!.max, mb);
    });
    return readings;
  };
  const timer = setInterval(() => void sample(), everyMs);
  return {
    /** Records the current RSS of every process as the `at` reading. */
    async mark(at: 'start' | 'middle' | 'end') {
      const readings = await sample();
      processes.forEach((p, i) => (report[p.name]![at] = readings[i]!));
    },
    stop(): RssReport {
      clearInterval(timer);
      return report;
    },
  };
}
