import type { Run } from '../../db/runs.ts';
import {
  finishToolCall,
  recordToolCall,
  restartToolCall,
  type ToolCallStart,
} from '../../db/toolCalls.ts';
import { withProject } from '../../db/withProject.ts';
import type { RiskClass } from '../contracts/common.ts';
import { AppError } from '../errors.ts';
import type { StageContext } from '../StageContext.ts';
import type { CallRecorder } from './createCallRecorder.ts';

/**
 * Records a call as `started` before it is made, so a crash during it is known on resume, and
 * settles it if a previous attempt already began it (its `tool_calls` row says `started` and
 * no checkpoint followed: the worker died during the call). Such a call is made again only
 * when its tool reads; any other is settled `uncertain` (`TOOL_OUTCOME_UNKNOWN`) with its
 * audit row and checkpoint, and the model is told its outcome is unknown. An approved call
 * (`awaiting_approval`) is moved to `started`.
 *
 * Harmless twice: the row is keyed by run, model step and call and read under its lock, so a
 * second attempt sees what the first wrote; a started write is settled, never repeated.
 *
 * @returns the call's `tool_calls` id to make the call under, or null when it was settled here
 * @throws AppError `STEP_RACE` (409) when another worker on this run already finished the call
 */
export async function settleRestartedCall(
  ctx: StageContext,
  a: {
    run: Run;
    start: ToolCallStart;
    modelStep: number;
    callIndex: number;
    risk: RiskClass;
    record: CallRecorder;
  },
): Promise<string | null> {
  const { run } = a;
  const earlier = await withProject(ctx.pool, run.projectId, async (tx) => {
    const { row, created } = await recordToolCall(tx, a.start, { status: 'started' });
    if (row.status === 'awaiting_approval') await restartToolCall(tx, row.callId);
    return { row, created };
  });
  const was = earlier.created ? null : earlier.row.status;
  if (was !== null && was !== 'started' && was !== 'awaiting_approval') {
    // Another worker on this run finished the call after this one read its checkpoints: this
    // attempt stops, and the retry replays the checkpoints instead of calling again.
    throw new AppError(
      'STEP_RACE',
      `call ${a.callIndex} of step ${a.modelStep} was already ${was}`,
      {
        status: 409,
      },
    );
  }
  if (was === 'started' && a.risk !== 'read') {
    await withProject(ctx.pool, run.projectId, async (tx) => {
      await finishToolCall(tx, earlier.row.callId, {
        status: 'uncertain',
        code: 'TOOL_OUTCOME_UNKNOWN',
      });
      await a.record.audit(tx, 'uncertain', { code: 'TOOL_OUTCOME_UNKNOWN' });
      await a.record.checkpoint(tx, {
        status: 'uncertain',
        code: 'TOOL_OUTCOME_UNKNOWN',
        content:
          'outcome unknown: an earlier attempt made this call and did not finish; it was not repeated',
        untrusted: false,
      });
    });
    return null;
  }
  return earlier.row.callId;
}
