import type { Approval } from '../../db/approvals.ts';

/** An approval as the API and `awooop approvals list --json` show it. */
export type ApprovalView = {
  id: string;
  runId: string;
  agent: string;
  tool: string;
  risk: string;
  /** The call's arguments, redacted as the gateway stored them. */
  arguments: Record<string, unknown>;
  /** What the approval is bound to: SHA-256 of the canonical `{ tool, arguments }`. */
  callSha256: string;
  reasons: readonly string[];
  status: Approval['status'];
  expiresAt: string;
  decidedBy: string | null;
  decidedVia: string | null;
  decidedAt: string | null;
};

/** The public shape of an approval: camelCase, times as ISO 8601. */
export function describeApproval(a: Approval): ApprovalView {
  return {
    id: a.approvalId,
    runId: a.runId,
    agent: a.agent,
    tool: a.tool,
    risk: a.risk,
    arguments: a.arguments,
    callSha256: a.callSha256,
    reasons: a.reasons,
    status: a.status,
    expiresAt: new Date(a.expiresAt).toISOString(),
    decidedBy: a.decidedBy,
    decidedVia: a.decidedVia,
    decidedAt: a.decidedAt === null ? null : new Date(a.decidedAt).toISOString(),
  };
}
