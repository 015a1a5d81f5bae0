import type { Logger } from 'pino';
import { getApproval } from '../../db/approvals.ts';
import { withProject } from '../../db/withProject.ts';
import type { ApproverAnswer } from '../channels/ChannelPlugin.ts';
import { AppError } from '../errors.ts';
import { decideApproval, type DecideDeps } from './decideApproval.ts';
import { isApprover } from './isApprover.ts';
import { fitsInNotice } from './notifyApprovers.ts';

/** What became of a Slack button press. */
export type SlackDecisionOutcome =
  | 'approved'
  | 'rejected'
  | 'already_decided'
  | 'expired'
  | 'not_found'
  | 'not_allowed'
  | 'unknown_action';

/**
 * Acts on an Approve / Reject Block Kit button pressed in a Slack approvals account: the
 * presser (`slack:<user id>`) must be an ACL member of the project with its approver role (or
 * `admin`), else nothing changes and the refusal is only logged; an Approve for an approval
 * whose arguments a notice could not show whole is refused too (a client can send any button
 * value). Then the approval is decided via `slack`. A refused decision is an outcome, not an
 * error; a failure to reach Postgres is thrown (the request answers 5xx, Slack shows the
 * press failed, nothing was decided).
 * Harmless twice (a repeated press): decideApproval decides a pending approval once, so the
 * second is `already_decided` and changes nothing.
 */
export async function decideFromSlack(
  deps: DecideDeps & { logger: Logger },
  { projectId, answer }: { projectId: string; answer: ApproverAnswer },
): Promise<SlackDecisionOutcome> {
  const action = answer.action;
  if (!action) return 'unknown_action';
  const decidedBy = answer.decidedBy;
  const project = await withProject(deps.pool, projectId, (tx) =>
    deps.contracts.active(tx, { projectId, kind: 'project', name: 'project' }),
  );
  if (!project || !isApprover(project.body, decidedBy)) {
    deps.logger.warn(
      { projectId, approvalId: action.approvalId, decidedBy },
      'an approval button was pressed by someone who may not decide',
    );
    return 'not_allowed';
  }
  if (action.decision === 'approved') {
    const approval = await withProject(deps.pool, projectId, (tx) =>
      getApproval(tx, action.approvalId),
    );
    if (approval && approval.status === 'pending' && !fitsInNotice(approval)) return 'not_allowed';
  }
  try {
    await decideApproval(deps, {
      projectId,
      approvalId: action.approvalId,
      decision: action.decision,
      decidedBy,
      via: 'slack',
    });
    return action.decision;
  } catch (error) {
    if (!(error instanceof AppError)) throw error;
    switch (error.code) {
      case 'APPROVAL_ALREADY_DECIDED':
        return 'already_decided';
      case 'APPROVAL_EXPIRED':
        return 'expired';
      case 'APPROVAL_NOT_FOUND':
        return 'not_found';
      // the presser was taken out of the ACL between the check above and the decision
      case 'NOT_APPROVER':
        return 'not_allowed';
      default:
        throw error;
    }
  }
}
