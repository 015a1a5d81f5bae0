import { z } from 'zod';
import { Identifier, MigrationMode, reportDuplicates } from './common.ts';

const Flow = z
  .strictObject({
    name: Identifier,
    mode: MigrationMode,
    canary: z
      .strictObject({
        percent: z.int().min(0).max(100).default(0),
        allowPeers: z.array(z.string().min(1).max(200)).default([]),
      })
      .optional(),
  })
  .superRefine((flow, ctx) => {
    if (flow.mode === 'canary' && !flow.canary) {
      ctx.addIssue({
        code: 'custom',
        path: ['canary'],
        message: 'required when mode is canary (percent and/or allowPeers)',
      });
    }
    if (flow.mode !== 'canary' && flow.canary) {
      ctx.addIssue({
        code: 'custom',
        path: ['canary'],
        message: `only allowed when mode is canary, not ${flow.mode}`,
      });
    }
  });

/** Runtime / Run State: the migration mode of each flow, timeouts, approval TTL, feature flags. */
export const RuntimeContract = z
  .strictObject({
    flows: z.array(Flow).min(1, "needs at least the 'default' flow"),
    timeouts: z
      .strictObject({
        runMs: z.int().min(1000).max(86_400_000).default(300_000),
        /** Refused by apply (not supported yet); read only in revisions stored before. */
        stageMs: z.int().min(100).max(3_600_000).optional(),
        modelMs: z.int().min(100).max(600_000).default(60_000),
        toolMs: z.int().min(100).max(600_000).default(30_000),
      })
      .prefault({}),
    approvalTtlSeconds: z.int().min(60).max(604_800).default(3600),
    features: z.strictObject({ writeTools: z.boolean().default(false) }).prefault({}),
    /** Refused by apply (not supported yet); read only in revisions stored before. */
    retry: z
      .strictObject({
        attempts: z.int().min(1).max(20).optional(),
        backoffMs: z.int().min(10).max(600_000).optional(),
      })
      .optional(),
  })
  .superRefine((runtime, ctx) => {
    const names = reportDuplicates(
      ctx,
      runtime.flows.map((flow) => flow.name),
      (i) => ['flows', i, 'name'],
      (name) => `duplicate flow "${name}"`,
    );
    if (!names.has('default'))
      ctx.addIssue({ code: 'custom', path: ['flows'], message: "needs a flow named 'default'" });
  });
export type RuntimeContract = z.infer<typeof RuntimeContract>;
