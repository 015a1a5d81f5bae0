import { approvalForCall, requestApproval, type Approval } from '../../db/approvals.ts';
import { appendAudit } from '../../db/auditEvents.ts';
import { transitionRun, type Run } from '../../db/runs.ts';
import { recordToolCall, type ToolCallStart } from '../../db/toolCalls.ts';
import { withProject } from '../../db/withProject.ts';
import { queueApprovalNotices } from '../approvals/queueApprovalNotices.ts';
import { AppError } from '../errors.ts';
import type { CallerScope, ToolDecision } from '../mcp/authorizeToolCall.ts';
import type { PinnedContracts } from '../runs/loadPinnedContracts.ts';
import type { StageContext } from '../StageContext.ts';
import type { ErrorCode } from '../errorCodes.ts';

/**
 * Where a call that needs approval stands: approved (make it), refused with a code (the
 * approval was rejected or expired, or covers other arguments or another agent), or paused
 * for a human's decision.
 */
export type ApprovalGate =
  { readonly approved: Approval } | { readonly refuse: ErrorCode } | { readonly paused: Approval };

/**
 * The approval gate for one call the gateway decided needs a human's approval. The first time,
 * in one transaction: an `approvals` row bound to the call's digest and agent, the call's
 * `tool_calls` row (`awaiting_approval`), a notice per approver (an outbound ledger row), the run moved to
 * `WAITING_APPROVAL` (its deadline past the approval's expiry) and an audit row; then the run
 * pauses. On the resume after a decision, it reads the decision.
 *
 * Harmless twice: the approval is keyed by run, model step and call, so asking again finds the
 * same one, and a decided one is only read; the first ask is all one transaction.
 */
export async function gateToolApproval(
  ctx: StageContext,
  a: {
    run: Run;
    project: PinnedContracts['project'];
    scope: CallerScope;
    modelStep: number;
    callIndex: number;
    start: ToolCallStart;
    decision: Extract<ToolDecision, { kind: 'approve' }>;
  },
): Promise<ApprovalGate> {
  const { run, start, decision } = a;
  return withProject(ctx.pool, run.projectId, async (tx) => {
    const existing = await approvalForCall(tx, {
      runId: run.runId,
      stepIndex: a.modelStep,
      callIndex: a.callIndex,
    });
    if (existing?.status === 'approved') {
      if (existing.callSha256 !== start.argumentsSha256 || existing.agent !== a.scope.agentName) {
        return { refuse: 'APPROVAL_MISMATCH' } as const;
      }
      return { approved: existing } as const;
    }
    if (existing && existing.status !== 'pending')
      return {
        refuse: existing.status === 'rejected' ? 'APPROVAL_REJECTED' : 'APPROVAL_EXPIRED',
      } as const;
    const approval = await requestApproval(tx, {
      projectId: run.projectId,
      runId: run.runId,
      traceId: run.traceId,
      stepIndex: a.modelStep,
      callIndex: a.callIndex,
      agent: a.scope.agentName,
      tool: decision.resolved.toolId,
      risk: decision.resolved.tool.risk,
      arguments: start.arguments,
      callSha256: start.argumentsSha256,
      reasons: decision.reasons,
      ttlSeconds: a.scope.runtime.approvalTtlSeconds,
    });
    await recordToolCall(tx, start, { status: 'awaiting_approval' });
    await queueApprovalNotices(ctx, tx, { approval, project: a.project });
    const paused = await transitionRun(tx, {
      runId: run.runId,
      from: 'ADMITTED',
      to: 'WAITING_APPROVAL',
      stage: 'execute',
      actor: ctx.actor,
      startedAt: ctx.now(),
      // The run outlives its approval's expiry by its own time budget.
      changes: { deadlineAt: approval.expiresAt + a.scope.runtime.timeouts.runMs },
      detail: {
        approval_id: approval.approvalId,
        tool: approval.tool,
        reasons: approval.reasons,
      },
    });
    if (!paused)
      throw new AppError('RUN_MOVED', `run ${run.runId} left ADMITTED while asking for approval`);
    await appendAudit(tx, {
      projectId: run.projectId,
      chain: `run:${run.runId}`,
      actor: ctx.actor,
      action: 'approval.requested',
      subject: `approval:${approval.approvalId}`,
      detail: {
        tool: approval.tool,
        risk: approval.risk,
        call_sha256: approval.callSha256,
        reasons: approval.reasons,
        expires_at: new Date(approval.expiresAt).toISOString(),
      },
      traceId: run.traceId,
      runId: run.runId,
    });
    return { paused: approval } as const;
  });
}
