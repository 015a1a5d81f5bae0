import type { Run } from '../../db/runs.ts';
import { stageFor } from '../contracts/runState.ts';
import type { StageOutcome } from './StageOutcome.ts';

/**
 * The outcome for a run another attempt already moved past this stage: hand it to the stage
 * its state needs now (a failed run goes to deliver, which sends any pending failure notice).
 */
export function alreadyDone(run: Run): StageOutcome {
  return run.state === 'FAILED' ? { next: 'deliver', notice: true } : { next: stageFor(run.state) };
}
