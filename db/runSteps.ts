import { sql, type CommonQueryMethods } from 'slonik';
import { z } from 'zod';

const ToolCallShape = z.object({
  id: z.string(),
  name: z.string(),
  arguments: z.record(z.string(), z.unknown()).nullable(),
});

/** A model step: what the model said and the tool calls it asked for (tool ids resolved). */
export const ModelStepBody = z.object({
  text: z.string(),
  toolCalls: z.array(ToolCallShape.extend({ toolId: z.string().nullable() })),
  provider: z.string(),
  model: z.string(),
  usage: z.object({ inputTokens: z.number(), outputTokens: z.number() }),
  latencyMs: z.number(),
  /** The route's targets tried for this step (fallbacks show as more than one). */
  attempts: z.array(
    z.object({
      provider: z.string(),
      model: z.string(),
      code: z.string().optional(),
      ms: z.number(),
    }),
  ),
  /**
   * The privacy gate's finding for this step: the personal-data classes the input carried
   * and the route targets skipped for them (names only, never the data).
   */
  privacy: z
    .object({
      classes: z.array(z.string()),
      skipped: z.array(z.object({ provider: z.string(), model: z.string() })),
    })
    .optional(),
});
export type ModelStepBody = z.infer<typeof ModelStepBody>;

/** A tool step: the answer to one call of the model step before it, as the model will read it. */
export const ToolStepBody = z.object({
  callId: z.string(),
  callIndex: z.number(),
  toolId: z.string().nullable(),
  status: z.enum(['ok', 'error', 'timeout', 'refused', 'proposed', 'uncertain']),
  code: z.string().nullable(),
  content: z.string(),
  /** Whether the content came from outside the platform (a tool result): the context firewall. */
  untrusted: z.boolean(),
});
export type ToolStepBody = z.infer<typeof ToolStepBody>;

const StepRow = z.discriminatedUnion('kind', [
  z.object({ stepIndex: z.number(), kind: z.literal('model'), body: ModelStepBody }),
  z.object({ stepIndex: z.number(), kind: z.literal('tool'), body: ToolStepBody }),
]);
/** One checkpoint of a run's tool loop. */
export type RunStep = z.infer<typeof StepRow>;

/** A run's checkpoints, in order. */
export async function listRunSteps(
  db: CommonQueryMethods,
  runId: string,
): Promise<readonly RunStep[]> {
  return db.any(sql.type(StepRow)`
    SELECT step_index AS "stepIndex", kind, body FROM run_steps
     WHERE run_id = ${runId} ORDER BY step_index`);
}

/**
 * Writes one checkpoint. The (run, step) key makes a second write of the same step fail
 * instead of forking the run's history: a loop that lost a race to another worker stops.
 */
export async function appendRunStep(
  db: CommonQueryMethods,
  run: { projectId: string; runId: string },
  step: RunStep,
): Promise<void> {
  await db.query(sql.unsafe`
    INSERT INTO run_steps (project_id, run_id, step_index, kind, body)
    VALUES (${run.projectId}, ${run.runId}, ${step.stepIndex}, ${step.kind},
            ${sql.jsonb(step.body as never)})`);
}
