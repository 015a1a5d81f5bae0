import type pg from 'pg';
import { measureRuns, openRuns, runMark, type RoundFigures } from './measureRuns.ts';
import { postRuns, type PostReport, type PostTarget } from './postRuns.ts';
import { sampleRss, type RssReport } from './sampleRss.ts';
import type { RunningSystem, SystemKind } from './startSystem.ts';

/** One measured round of one system. */
export type RoundResult = RoundFigures & {
  kind: SystemKind;
  posted: PostReport;
  /** Accepted runs still unfinished when the round's time ran out. */
  unfinished: number;
  rss: RssReport;
};

/** How a round drives its system. */
export type RoundPlan = {
  count: number;
  warmup: number;
  connections: number;
  rate?: number | undefined;
  /** The most a round may take, posting and draining, ms. */
  timeoutMs: number;
};

/**
 * Warms the system up with `warmup` runs (posted and finished, not measured), then posts
 * `count` runs and waits until every accepted one is finished (or the time is up), sampling
 * the stage processes' RSS at the start, when half are finished, and at the end.
 */
export async function runRound(
  db: pg.Client,
  kind: SystemKind,
  system: RunningSystem,
  target: PostTarget,
  plan: RoundPlan,
): Promise<RoundResult> {
  const deadline = Date.now() + plan.timeoutMs;
  if (plan.warmup > 0) {
    const warmMark = await runMark(db, kind);
    await postRuns(
      { ...target, body: (i) => target.body(-1 - i) },
      { count: plan.warmup, connections: plan.connections, rate: plan.rate },
    );
    await drain(db, kind, warmMark, deadline, () => {});
  }
  const mark = await runMark(db, kind);
  const rss = sampleRss(system.workers);
  await rss.mark('start');
  let posting = true;
  const posted = postRuns(target, plan).finally(() => (posting = false));
  let middle = false;
  const unfinished = await drain(
    db,
    kind,
    mark,
    deadline,
    async (finished) => {
      if (!middle && finished >= plan.count / 2) {
        middle = true;
        await rss.mark('middle');
      }
    },
    () => posting,
  );
  await rss.mark('end');
  return {
    kind,
    posted: await posted,
    unfinished,
    rss: rss.stop(),
    ...(await measureRuns(db, kind, mark)),
  };
}

/**
 * Polls until no run after `mark` is open (and, with `busy`, posting is over) or the deadline
 * passes; returns how many were still open. `onProgress` gets the finished count.
 */
async function drain(
  db: pg.Client,
  kind: SystemKind,
  mark: number,
  deadline: number,
  onProgress: (finished: number) => void | Promise<void>,
  busy: () => boolean = () => false,
): Promise<number> {
  for (;;) {
    const stillPosting = busy();
    const created = (await runMark(db, kind)) - mark;
    const open = await openRuns(db, kind, mark);
    await onProgress(created - open);
    if ((!stillPosting && open === 0) || Date.now() > deadline) return open;
    await new Promise((r) => setTimeout(r, 250));
  }
}
