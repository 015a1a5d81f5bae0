import { z } from 'zod';
import { ProjectId, TraceId } from './common.ts';

/** The pipeline's stages, in order. */
export const Stage = z.enum(['resolve', 'policy', 'execute', 'sanitize', 'deliver']);
export type Stage = z.infer<typeof Stage>;

/**
 * A stage job's data. It carries ids only: the run itself lives in Postgres, so a job lost
 * with Redis is rebuilt from the run row, and no message text or credential sits in Redis.
 */
export const RunJob = z.strictObject({
  projectId: ProjectId,
  runId: z.uuid(),
  traceId: TraceId,
  stage: Stage,
});
export type RunJob = z.infer<typeof RunJob>;
