import { z } from 'zod';
import { ArtifactRef, Identifier, RiskClass, ToolId } from './common.ts';

/** Agent: a versioned capability — prompt, I/O schemas, context domain, safety ceiling, tools. */
export const AgentContract = z.strictObject({
  description: z.string().min(1).max(2000),
  capabilityVersion: z.string().regex(/^\d+\.\d+\.\d+$/, 'must be a semantic version like 1.2.0'),
  prompt: ArtifactRef,
  inputSchema: ArtifactRef.optional(),
  outputSchema: ArtifactRef.optional(),
  contextDomain: Identifier,
  safetyCeiling: RiskClass,
  tools: z.array(ToolId).default([]),
  policy: Identifier.default('default'),
  flow: Identifier.default('default'),
  maxSteps: z.int().min(1).max(50).default(8),
  history: z.strictObject({ maxMessages: z.int().min(0).max(200).default(20) }).prefault({}),
});
export type AgentContract = z.infer<typeof AgentContract>;
