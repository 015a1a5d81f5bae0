import type { Stage } from '../contracts/runJob.ts';

/**
 * What a stage tells its queue shell: move on to `next` (null: nothing more to do; `notice`:
 * the run failed and deliver is to send its failure notice), or run this same stage again
 * after `waitMs` (a session's earlier run is still executing).
 */
export type StageOutcome =
  { next: Stage | null; notice?: boolean } | { waitMs: number; reason: string };
