import type { CommonQueryMethods } from 'slonik';
import type { Approval } from '../../db/approvals.ts';
import { enqueueApprovalNotices } from '../../db/outboundMessages.ts';
import type { ProjectContract } from '../contracts/projectContract.ts';
import type { StageContext } from '../StageContext.ts';
import { approvalPrompt, approverRecipients } from './notifyApprovers.ts';

/**
 * Queues an approval's notices in the caller's transaction: one `approval` row of the
 * outbound ledger per approver of the project's approvals account (read at its active
 * revision), each with the notice's text and buttons as {@link notifyApprovers} will send
 * them. The recipients are those of that account's own channel only (see
 * {@link approverRecipients}). Returns how many approvers there are; none (no approvals
 * account, or no approver on its channel) is logged, and the approval can still be decided
 * through the API or the CLI.
 * Harmless twice: the (approval, recipient) key keeps the rows already there.
 */
export async function queueApprovalNotices(
  ctx: Pick<StageContext, 'contracts' | 'channels' | 'logger'>,
  tx: CommonQueryMethods,
  { approval, project }: { approval: Approval; project: ProjectContract },
): Promise<number> {
  const name = project.approvals.channel;
  const account =
    name === undefined
      ? null
      : await ctx.contracts.active(tx, { projectId: approval.projectId, kind: 'channel', name });
  const recipients = approverRecipients(
    project,
    ctx.channels,
    name === undefined ? {} : { [name]: account?.body },
  );
  if (recipients.length === 0) {
    ctx.logger.warn(
      { runId: approval.runId, approvalId: approval.approvalId, account: name ?? null },
      'no approver can be asked on a channel; decide through the API or the CLI',
    );
    return 0;
  }
  await enqueueApprovalNotices(
    tx,
    approval,
    { approvalId: approval.approvalId, ...approvalPrompt(approval) },
    recipients,
  );
  return recipients.length;
}
