import type { FlowChange } from '../../db/migrationState.ts';

/** One line for a flow mode that moved: `flow default: mode suggest → shadow`. */
export function formatFlowChange(f: FlowChange): string {
  const to = f.mode ?? 'none (the active runtime contract has no such flow)';
  return `flow ${f.flow}: mode ${f.previousMode ? `${f.previousMode} → ` : ''}${to}`;
}
