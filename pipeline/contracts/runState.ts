import type { Stage } from './runJob.ts';

/** A run's states, in the order the pipeline moves it through them. */
export const RUN_STATES = [
  'RECEIVED',
  'RESOLVED',
  'ADMITTED',
  'WAITING_APPROVAL',
  'EXECUTED',
  'SANITIZED',
  'COMPLETED',
  'FAILED',
] as const;
export type RunState = (typeof RUN_STATES)[number];

/** States a run never leaves. */
export const TERMINAL_STATES: readonly RunState[] = ['COMPLETED', 'FAILED'];

/** Whether a run in `state` is finished. */
export function isTerminal(state: RunState): boolean {
  return TERMINAL_STATES.includes(state);
}

/** The stage that moves a run out of `state`; null once it is terminal. */
export function stageFor(state: RunState): Stage | null {
  switch (state) {
    case 'RECEIVED':
      return 'resolve';
    case 'RESOLVED':
      return 'policy';
    case 'ADMITTED':
      return 'execute';
    case 'WAITING_APPROVAL':
      // execute asks the approvers (again, if a notice is unsent); a decision moves the run on
      return 'execute';
    case 'EXECUTED':
      return 'sanitize';
    case 'SANITIZED':
      return 'deliver';
    case 'COMPLETED':
    case 'FAILED':
      return null;
  }
}

/** The state a run is in while `stage` works on it (the state `stageFor` maps to it). */
export function stateFor(stage: Stage): RunState {
  return RUN_STATES.find((s) => stageFor(s) === stage)!;
}

/**
 * The BullMQ job id of a run's stage: one live job per run and stage (no ':' allowed). A
 * failed run's notice has its own id, because the job that failed it may still hold (or, kept
 * for inspection, keep) the stage's id.
 */
export function stageJobId(stage: Stage, runId: string, notice = false): string {
  return notice ? `${stage}-${runId}-notice` : `${stage}-${runId}`;
}
