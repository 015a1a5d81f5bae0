import type { LoadCounts } from './driveLoad.ts';
import type { FaultRecord } from './injectFaults.ts';
import type { ChaosOptions } from './parseChaosOptions.ts';
import type { Quiescence } from './awaitQuiescence.ts';
import type { ChaosTally } from './tallyChaos.ts';

/** The `--json` object: the summary fields first, then what explains them. */
export type ChaosReport = ReturnType<typeof chaosReport>;

/** Puts a chaos run's verdict, its faults and its timings into one JSON-ready object. */
export function chaosReport({
  options,
  seed,
  tally,
  counts,
  sent,
  faults,
  quiescence,
  timings,
  logFile,
}: {
  options: ChaosOptions;
  seed: number;
  tally: ChaosTally;
  counts: LoadCounts;
  /** Distinct messages the load started. */
  sent: number;
  faults: readonly FaultRecord[];
  quiescence: Quiescence;
  timings: { setupMs: number; loadMs: number; drainMs: number; totalMs: number };
  logFile: string;
}) {
  const faultCounts: Record<string, number> = {};
  for (const f of faults) if (!f.error) faultCounts[f.kind] = (faultCounts[f.kind] ?? 0) + 1;
  const s = (ms: number) => Math.round(ms / 100) / 10;
  return {
    accepted: tally.accepted,
    completed: tally.completed,
    lost: tally.lost,
    duplicated: tally.duplicated,
    failed_with_code: tally.failed_with_code,
    uncertain: tally.uncertain,
    quiet: quiescence.quiet,
    details: {
      seed,
      rate: options.rate,
      sent,
      achieved_rate: Math.round((sent / Math.max(1, timings.loadMs)) * 10_000) / 10,
      duration_s: {
        setup: s(timings.setupMs),
        load: s(timings.loadMs),
        drain: s(timings.drainMs),
        total: s(timings.totalMs),
      },
      faults: faultCounts,
      faults_failed: faults.filter((f) => f.error).length,
      fault_log: faults,
      requests: counts,
      failed_by_code: tally.failedByCode,
      notice_missing: tally.noticeMissing,
      unaccepted_runs: tally.unacceptedRuns,
      open_at_end: quiescence.open,
      messages: tally.messages,
      lost_runs: tally.lostRuns,
      duplicated_runs: tally.duplicatedRuns,
      log_file: logFile,
    },
  };
}

/** The one summary line: `accepted=N completed=N lost=0 duplicated=0 failed_with_code=K`. */
export function summaryLine(r: ChaosReport): string {
  return (
    `accepted=${r.accepted} completed=${r.completed} lost=${r.lost} ` +
    `duplicated=${r.duplicated} failed_with_code=${r.failed_with_code}`
  );
}

/** A second, human line: what was injected and what else is worth a look. */
export function detailLine(r: ChaosReport): string {
  const d = r.details;
  const faults = Object.entries(d.faults)
    .map(([k, n]) => `${k}=${n}`)
    .join(' ');
  const codes = Object.entries(d.failed_by_code)
    .map(([k, n]) => `${k}:${n}`)
    .join(',');
  return (
    `uncertain=${r.uncertain} notice_missing=${d.notice_missing} ` +
    `unaccepted_runs=${d.unaccepted_runs.total} retries=${d.requests.retries} ` +
    `dup_sent=${d.requests.duplicatesConcurrent}+${d.requests.duplicatesLate} ` +
    `${faults} rate=${d.achieved_rate}/s load=${d.duration_s.load}s drain=${d.duration_s.drain}s` +
    `${codes ? ` codes=${codes}` : ''}${r.quiet ? '' : ' NOT_QUIET'} seed=${d.seed}`
  );
}
