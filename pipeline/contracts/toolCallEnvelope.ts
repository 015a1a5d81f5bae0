import { z } from 'zod';
import {
  Identifier,
  ProjectId,
  RiskClass,
  SecretRef,
  Sha256Hex,
  ToolId,
  TraceId,
} from './common.ts';

/**
 * One tool call as the gateway sees it before it is made: who asks, what tool at what risk,
 * the arguments and their SHA-256 (what an approval is bound to), and the credential *ref*,
 * never its value.
 */
export const ToolCallEnvelope = z.strictObject({
  callId: z.uuid(),
  projectId: ProjectId,
  runId: z.uuid(),
  traceId: TraceId,
  agent: Identifier,
  tool: ToolId,
  risk: RiskClass,
  arguments: z.record(z.string(), z.unknown()),
  argumentsSha256: Sha256Hex,
  credentialRef: SecretRef.optional(),
});
export type ToolCallEnvelope = z.infer<typeof ToolCallEnvelope>;
