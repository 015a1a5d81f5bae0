import type { Run } from '../../db/runs.ts';

/**
 * Whether the run's effective policy (written by the policy stage) says
 * `privacy.storeTranscripts: false`: its text is removed when it ends. Read from the run row,
 * so a run of a policy without it costs no query.
 */
export function removesTranscripts(run: Pick<Run, 'policy'>): boolean {
  const policy = run.policy;
  return (
    typeof policy === 'object' &&
    policy !== null &&
    (policy as { storeTranscripts?: unknown }).storeTranscripts === false
  );
}
