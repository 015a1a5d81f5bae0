import type { CommonQueryMethods } from 'slonik';
import { appendAudit } from '../../db/auditEvents.ts';
import type { RunStep, ToolStepBody } from '../../db/runSteps.ts';
import type { Run } from '../../db/runs.ts';
import type { StageContext } from '../StageContext.ts';

/**
 * What one tool call of a run writes as it settles: its audit row and its checkpoint, always
 * in one transaction. Harmless twice: the checkpoint is keyed by run and step index, so a
 * second settle of the same call fails on it and its audit row is rolled back with it.
 */
export type CallRecorder = {
  /** Appends the call's `tool.call` audit row with `status` (and the arguments' digest). */
  audit(tx: CommonQueryMethods, status: string, detail?: Record<string, unknown>): Promise<void>;
  /** Checkpoints the call's result as the run's next step. */
  checkpoint(
    tx: CommonQueryMethods,
    body: Omit<ToolStepBody, 'callId' | 'callIndex' | 'toolId'>,
  ): Promise<void>;
};

/**
 * The recorder for one call of a model step: `call` is the model's request (its id and, when
 * it names an offered tool, the tool id), `callIndex` its place in the step, `nextStep` the
 * index its checkpoint takes, and `checkpoint` the loop's writer of checkpoints.
 */
export function createCallRecorder(
  ctx: StageContext,
  a: {
    run: Run;
    call: { id: string; name: string; toolId: string | null };
    callIndex: number;
    nextStep: number;
    argumentsSha256: string;
    checkpoint: (tx: CommonQueryMethods, step: RunStep) => Promise<void>;
  },
): CallRecorder {
  const { run, call } = a;
  return {
    async audit(tx, status, detail = {}) {
      await appendAudit(tx, {
        projectId: run.projectId,
        chain: `run:${run.runId}`,
        actor: ctx.actor,
        action: 'tool.call',
        subject: `tool:${call.toolId ?? call.name}`,
        detail: { status, arguments_sha256: a.argumentsSha256, ...detail },
        traceId: run.traceId,
        runId: run.runId,
      });
    },
    checkpoint(tx, body) {
      return a.checkpoint(tx, {
        stepIndex: a.nextStep,
        kind: 'tool',
        body: { callId: call.id, callIndex: a.callIndex, toolId: call.toolId, ...body },
      });
    },
  };
}
