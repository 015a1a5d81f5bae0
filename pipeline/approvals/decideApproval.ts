import type { Logger } from 'pino';
import type { DatabasePool } from 'slonik';
import { appendAudit } from '../../db/auditEvents.ts';
import {
  decideApprovalRow,
  getApproval,
  type Approval,
  type DecidedVia,
} from '../../db/approvals.ts';
import { failQueuedApprovalNotices } from '../../db/outboundMessages.ts';
import { getRun, transitionRun } from '../../db/runs.ts';
import { withProject } from '../../db/withProject.ts';
import type { ChannelRegistry } from '../channels/ChannelPlugin.ts';
import { AppError, NotFoundError, PolicyDeniedError } from '../errors.ts';
import type { ContractReader } from '../runs/createContractReader.ts';
import { failRun } from '../runs/failRun.ts';
import { loadPinnedChannel } from '../runs/loadPinnedContracts.ts';
import type { Enqueue } from '../Enqueue.ts';
import { approverRoles, isApprover } from './isApprover.ts';
import { APPROVAL_DECIDED_CODES } from './notifyApprovers.ts';

/**
 * What deciding needs: the database, the queues, the contract reader (for the channel) and
 * the channel plugins (a rejection's failure notice is written in the channel's dialect).
 */
export type DecideDeps = {
  pool: DatabasePool;
  enqueue: Enqueue;
  contracts: ContractReader;
  channels: ChannelRegistry;
  logger?: Logger;
};

/**
 * Records a human's decision on an approval, once, and moves its run on: approved, the run
 * goes back to `ADMITTED` and execute resumes it from its checkpoints, making exactly the
 * approved call; rejected (or expired, from the sweeper), the run ends with
 * `APPROVAL_REJECTED` / `APPROVAL_EXPIRED` and the user gets the failure notice.
 * A human's decision (approved or rejected) is made only by an approver: `decidedBy` must be
 * an ACL subject of the project's active contract holding the `approver` role or `admin`
 * (`isApprover`; the caller's own path checks its `approvals.decide` permission before)
 * (`api:<key id>`, `telegram:<user id>`, `email:…`), on every path (API, CLI, Telegram); only
 * the sweeper's `expired` needs none. `expectedSha256`, when given, is the call digest the
 * decider saw: another one is refused. Refusals: 403 `NOT_APPROVER`, 404 `APPROVAL_NOT_FOUND`,
 * 409 `APPROVAL_ALREADY_DECIDED` / `APPROVAL_EXPIRED` / `APPROVAL_MISMATCH`. Harmless twice:
 * only a pending approval changes (the row is locked), the run's transition is conditional on
 * `WAITING_APPROVAL`, and the job ids are per run.
 */
export async function decideApproval(
  deps: DecideDeps,
  d: {
    projectId: string;
    approvalId: string;
    decision: 'approved' | 'rejected' | 'expired';
    decidedBy: string;
    via: DecidedVia;
    expectedSha256?: string;
  },
): Promise<Approval> {
  const now = Date.now();
  const outcome = await withProject(deps.pool, d.projectId, async (tx) => {
    if (d.decision !== 'expired') {
      // The ACL as it is now, not as the run pinned it: removing an approver takes effect at once.
      const project = await deps.contracts.active(tx, {
        projectId: d.projectId,
        kind: 'project',
        name: 'project',
      });
      if (!project || !isApprover(project.body, d.decidedBy)) {
        const roles = project ? approverRoles(project.body) : ['approver', 'admin'];
        throw new PolicyDeniedError(
          'NOT_APPROVER',
          `${d.decidedBy} may not decide approvals of ${d.projectId}: it is not an ACL member with the ${roles.join(' or ')} role (project.acl.members)`,
        );
      }
    }
    if (d.expectedSha256 !== undefined) {
      const seen = await getApproval(tx, d.approvalId);
      if (seen && seen.callSha256 !== d.expectedSha256) {
        throw new AppError(
          'APPROVAL_MISMATCH',
          `approval ${d.approvalId} is bound to call ${seen.callSha256}, not ${d.expectedSha256}`,
          { status: 409 },
        );
      }
    }
    const result = await decideApprovalRow(tx, d);
    if (!result)
      throw new NotFoundError(
        'APPROVAL_NOT_FOUND',
        `no approval ${d.approvalId} in project ${d.projectId}`,
      );
    const { approval } = result;
    if (result.expired) {
      throw new AppError(
        'APPROVAL_EXPIRED',
        `approval ${d.approvalId} expired; the run has ended or will end`,
        { status: 409 },
      );
    }
    if (!result.decided) {
      throw new AppError(
        'APPROVAL_ALREADY_DECIDED',
        `approval ${d.approvalId} was already ${approval.status}${approval.decidedBy ? ` by ${approval.decidedBy}` : ''}`,
        { status: 409 },
      );
    }
    await appendAudit(tx, {
      projectId: d.projectId,
      chain: `run:${approval.runId}`,
      actor: d.decidedBy,
      action: `approval.${d.decision}`,
      subject: `approval:${approval.approvalId}`,
      detail: { via: d.via, tool: approval.tool, call_sha256: approval.callSha256 },
      traceId: approval.traceId,
      runId: approval.runId,
    });
    // Nobody needs asking any more: notices still queued (a retry waiting) are settled failed
    // with the decision, not left in the ledger as if they were to go out.
    await failQueuedApprovalNotices(tx, approval.approvalId, APPROVAL_DECIDED_CODES[d.decision]);
    const run = await getRun(tx, approval.runId);
    if (!run || run.state !== 'WAITING_APPROVAL') return { approval, next: null };
    if (d.decision === 'approved') {
      const moved = await transitionRun(tx, {
        runId: run.runId,
        from: 'WAITING_APPROVAL',
        to: 'ADMITTED',
        stage: 'approval',
        actor: d.decidedBy,
        startedAt: now,
        detail: { approval_id: approval.approvalId, via: d.via },
      });
      return { approval, next: moved ? ('execute' as const) : null };
    }
    const channel = await loadPinnedChannel({ contracts: deps.contracts }, tx, run);
    const code = d.decision === 'rejected' ? 'APPROVAL_REJECTED' : 'APPROVAL_EXPIRED';
    const failed = await failRun(
      { actor: d.decidedBy, logger: deps.logger, channels: deps.channels },
      tx,
      run,
      {
        code,
        message:
          d.decision === 'rejected'
            ? `an operator rejected the call to ${approval.tool}`
            : `no operator decided on the call to ${approval.tool} in time`,
        detail: { approval_id: approval.approvalId, tool: approval.tool },
      },
      { stage: 'approval', startedAt: now, channel, from: 'WAITING_APPROVAL' },
    );
    return { approval, next: failed ? ('notice' as const) : null };
  });
  const job = {
    projectId: d.projectId,
    runId: outcome.approval.runId,
    traceId: outcome.approval.traceId,
  };
  // Enqueued after the commit. The decision stands if this fails: the sweeper finds the run
  // (admitted, or failed with its notice unsent) and enqueues it, so the caller is not told
  // of a failure that a retry would only meet as "already decided".
  try {
    if (outcome.next === 'execute') await deps.enqueue('execute', { ...job, stage: 'execute' });
    if (outcome.next === 'notice')
      await deps.enqueue('deliver', { ...job, stage: 'deliver' }, { notice: true });
  } catch (error) {
    deps.logger?.warn(
      { ...job, err: error instanceof Error ? error.message : String(error) },
      'enqueue after an approval decision failed; the sweeper will pick the run up',
    );
  }
  return outcome.approval;
}
