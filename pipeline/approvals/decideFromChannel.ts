import type { Logger } from 'pino';
import { getApproval } from '../../db/approvals.ts';
import { withProject } from '../../db/withProject.ts';
import type { ApproverAnswer } from '../channels/ChannelPlugin.ts';
import type { ChannelContract } from '../contracts/channelContract.ts';
import { AppError } from '../errors.ts';
import type { SecretResolver } from '../secrets/createSecretResolver.ts';
import { decideApproval, type DecideDeps } from './decideApproval.ts';
import { isApprover } from './isApprover.ts';
import { fitsInNotice } from './notifyApprovers.ts';

/** What deciding from a button press needs: deciding's deps, the account's secrets, a logger. */
export type ChannelDecisionDeps = DecideDeps & { secrets: SecretResolver; logger: Logger };

/** The answer to a press by someone who may not decide (not an ACL approver of the project). */
export const NOT_ALLOWED =
  'Not allowed: you may not decide approvals here (it needs the approver role)';

/** What became of a button press. */
export type ChannelDecisionOutcome =
  | 'approved'
  | 'rejected'
  | 'already_decided'
  | 'expired'
  | 'not_found'
  | 'not_allowed'
  | 'unknown_action';

/**
 * Acts on an Approve / Reject button pressed in an approvals account (a channel plugin with
 * the approvals capability, Telegram today): the presser (`answer.decidedBy`, e.g.
 * `telegram:<from.id>`) must be an ACL member of the project with the `approver` role (or
 * `admin`: `isApprover`), else nothing changes; then the approval is decided (via the channel's type, by
 * the presser) and the press acknowledged with the outcome ("Approved", "Rejected",
 * "Already approved by …", "Expired", "Not allowed"). A refused decision is an outcome, not
 * an error; a failure to reach Postgres is thrown (the webhook answers 5xx and the channel
 * retries, nothing having been decided). A failed acknowledgement is only logged.
 * Harmless twice (a retried update): decideApproval decides a pending approval once, so the
 * second press is answered "Already approved by …" and changes nothing.
 */
export async function decideFromChannel(
  deps: ChannelDecisionDeps,
  {
    projectId,
    accountId,
    channel,
    answer,
  }: {
    projectId: string;
    /** The account's name: its sender is the cached one. */
    accountId: string;
    /** The account the press came in on (one with `approvals: true`). */
    channel: ChannelContract;
    answer: ApproverAnswer;
  },
): Promise<ChannelDecisionOutcome> {
  const decidedBy = answer.decidedBy;
  const { outcome, text } = await decide();
  try {
    const { sender } = await deps.channels.sender(
      (ref) => deps.secrets.resolve(projectId, ref),
      { projectId, accountId },
      channel,
    );
    await sender.acknowledge?.(answer, text);
  } catch (error) {
    // A retried update's press was acknowledged already (Telegram refuses a second answer),
    // or the channel is away: the decision stands either way, and the spinner times out.
    deps.logger.warn(
      { projectId, outcome, err: error instanceof Error ? error.message : String(error) },
      'could not answer an approval button press',
    );
  }
  return outcome;

  async function decide(): Promise<{ outcome: ChannelDecisionOutcome; text: string }> {
    const action = answer.action;
    const via = deps.channels.find(channel.type)?.approvals?.via;
    if (!action || !via) return { outcome: 'unknown_action', text: 'Unknown action' };
    const project = await withProject(deps.pool, projectId, (tx) =>
      deps.contracts.active(tx, { projectId, kind: 'project', name: 'project' }),
    );
    if (!project || !isApprover(project.body, decidedBy)) {
      deps.logger.warn(
        { projectId, approvalId: action.approvalId, decidedBy },
        'an approval button was pressed by someone who may not decide',
      );
      return { outcome: 'not_allowed', text: NOT_ALLOWED };
    }
    if (action.decision === 'approved') {
      const approval = await withProject(deps.pool, projectId, (tx) =>
        getApproval(tx, action.approvalId),
      );
      // The notice could not show these arguments whole and offered no Approve button.
      if (approval && approval.status === 'pending' && !fitsInNotice(approval)) {
        return { outcome: 'not_allowed', text: 'Too long to approve here: use the API or the CLI' };
      }
    }
    try {
      await decideApproval(deps, {
        projectId,
        approvalId: action.approvalId,
        decision: action.decision,
        decidedBy,
        via,
      });
      return action.decision === 'approved'
        ? { outcome: 'approved', text: 'Approved' }
        : { outcome: 'rejected', text: 'Rejected' };
    } catch (error) {
      if (!(error instanceof AppError)) throw error;
      switch (error.code) {
        case 'APPROVAL_ALREADY_DECIDED': {
          const current = await withProject(deps.pool, projectId, (tx) =>
            getApproval(tx, action.approvalId),
          );
          if (current?.status === 'expired') return { outcome: 'expired', text: 'Expired' };
          const by = current?.decidedBy ? ` by ${current.decidedBy}` : '';
          return {
            outcome: 'already_decided',
            text: `Already ${current?.status ?? 'decided'}${by}`,
          };
        }
        case 'APPROVAL_EXPIRED':
          return { outcome: 'expired', text: 'Expired' };
        case 'APPROVAL_NOT_FOUND':
          return { outcome: 'not_found', text: 'Unknown approval' };
        // the presser was taken out of the ACL between the check above and the decision
        case 'NOT_APPROVER':
          return { outcome: 'not_allowed', text: NOT_ALLOWED };
        default:
          throw error;
      }
    }
  }
}
