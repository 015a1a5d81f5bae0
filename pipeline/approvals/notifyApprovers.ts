import type { Approval } from '../../db/approvals.ts';
import { appendAudit } from '../../db/auditEvents.ts';
import { listApprovalNotices } from '../../db/outboundMessages.ts';
import type { Run } from '../../db/runs.ts';
import { withProject } from '../../db/withProject.ts';
import type { ApprovalPrompt, ChannelPlugin, ChannelRegistry } from '../channels/ChannelPlugin.ts';
import { sendLedgerBatch, type Outlet } from '../channels/sendLedgerBatch.ts';
import type { ChannelContract } from '../contracts/channelContract.ts';
import type { ProjectContract } from '../contracts/projectContract.ts';
import type { ContractBodies } from '../contracts/tenantFile.ts';
import { NonRetryableError } from '../errors.ts';
import type { StageContext } from '../StageContext.ts';
import { isApprover } from './isApprover.ts';
import type { ErrorCode } from '../errorCodes.ts';

/** A notice's failure code when its approval was decided before the notice went out. */
export const APPROVAL_DECIDED_CODES = {
  approved: 'APPROVAL_APPROVED',
  rejected: 'APPROVAL_REJECTED',
  expired: 'APPROVAL_EXPIRED',
} as const satisfies Record<string, ErrorCode>;

/** The most characters of the call's arguments a notice shows. */
const MAX_ARGUMENTS_CHARS = 1500;
/** Telegram's limit is 4096; the rest of the notice is short. */
const MAX_TEXT_CHARS = 4000;

/**
 * The plugin an approvals account asks through, or null: the account must have
 * `approvals: true` and its plugin the approvals capability (and buttons).
 */
function approvalsPlugin(
  registry: ChannelRegistry,
  account: ChannelContract | null | undefined,
): ChannelPlugin | null {
  if (!account?.approvals) return null;
  const plugin = registry.find(account.type);
  return plugin?.approvals && plugin.capabilities.buttons ? plugin : null;
}

/**
 * The recipient ids to ask for an approval: the project's ACL members with a
 * `<prefix>:<user id>` subject who may decide (`isApprover`: the `approver` role or `admin`), where
 * the prefix is the `subjectPrefix` of the approvals account's own plugin (`telegram`: a
 * user's private chat with the bot has the user's id; `slack`: a DM to the user id). Members
 * of other channels are not asked there: a project with both `telegram:` and `slack:`
 * approvers asks only those of the approvals account's type. Empty unless
 * `approvals.channel` names an account in `channels` (the project's accounts by name, or
 * just the approvals one) whose plugin can ask approvers; whether the account may ask now
 * (`approvals: true`, buttons, its credentials) is checked when the notice is sent.
 */
export function approverRecipients(
  project: ProjectContract,
  registry: ChannelRegistry,
  channels: Readonly<Record<string, ChannelContract | null | undefined>>,
): string[] {
  const name = project.approvals.channel;
  if (name === undefined) return [];
  const account = channels[name];
  const prefix = account ? registry.find(account.type)?.approvals?.subjectPrefix : undefined;
  if (prefix === undefined) return [];
  const ids = project.acl.members.flatMap((m) =>
    m.subject.startsWith(`${prefix}:`) && isApprover(project, m.subject)
      ? [m.subject.slice(prefix.length + 1)]
      : [],
  );
  return [...new Set(ids)];
}

/** What one {@link notifyApprovers} call did with the approval's notices. */
export type NotifyReport = {
  sent: number;
  /** Sends that may or may not have arrived (an answer lost, a sender died mid-call). */
  uncertain: number;
  /** Notices the channel refused, or that could not be sent at all (no approvals channel). */
  failed: number;
};

/**
 * Sends an approval's queued notices (`outbound_messages` rows of kind `approval`, one per
 * approver) through the project's approvals account, by its plugin's `askApprover` on the
 * account's cached sender, with the text and buttons the row holds (see
 * {@link approvalPrompt}). Each notice goes through {@link sendLedgerBatch}, the claim → send
 * → settle of every outbound row: `sent` (with the channel's message id and, in the same
 * transaction, an `approval.notified` audit row), `uncertain` when the call may have gone out
 * (never repeated: `askApprover` cannot be deduped), `failed` when the channel refuses it
 * (logged; the others are still asked and the run goes on waiting). A retryable failure (429,
 * 5xx, no connection) puts the notice back to `queued` and is rethrown, so the job retries.
 * Notices of an approval no longer pending or past its expiry, or with no usable approvals
 * channel (none, no `approvals: true`, a plugin that cannot ask approvers, or its credentials
 * missing), are settled `failed` unsent.
 * Harmless twice: a notice is sent only by whoever claims it from `queued`, so a second call
 * skips what was sent, is being sent, or may have been sent; it never sends one twice.
 */
export async function notifyApprovers(
  ctx: StageContext,
  {
    run,
    approval,
    project,
    channel,
  }: {
    run: Run;
    approval: Approval;
    project: ProjectContract;
    /**
     * The approvals channel account's contract (`project.approvals.channel`), if the caller
     * has it; left out, its active revision is read here (only when a notice is pending).
     */
    channel?: ContractBodies['channel'] | null;
  },
): Promise<NotifyReport> {
  const report: NotifyReport = { sent: 0, uncertain: 0, failed: 0 };
  const accountName = project.approvals.channel;
  const { notices, active } = await withProject(ctx.pool, run.projectId, async (tx) => {
    const notices = await listApprovalNotices(tx, { approvalId: approval.approvalId });
    const waiting = notices.some((n) => n.status === 'queued' || n.status === 'sending');
    const active =
      channel === undefined && waiting && accountName !== undefined
        ? await ctx.contracts.active(tx, {
            projectId: run.projectId,
            kind: 'channel',
            name: accountName,
          })
        : null;
    return { notices, active: active?.body ?? null };
  });
  const pending = notices.filter((n) => n.status === 'queued' || n.status === 'sending');
  if (pending.length === 0) return report;
  const account = channel === undefined ? active : channel;
  const plugin = approvalsPlugin(ctx.channels, account);
  const unsendable: ErrorCode | null =
    approval.status !== 'pending'
      ? APPROVAL_DECIDED_CODES[approval.status]
      : approval.expiresAt <= ctx.now()
        ? 'APPROVAL_EXPIRED'
        : !plugin || !account || accountName === undefined
          ? 'APPROVALS_CHANNEL_UNAVAILABLE'
          : null;
  const prefix = plugin?.approvals?.subjectPrefix ?? '';
  const outlet: Outlet = {
    ctx,
    projectId: run.projectId,
    runId: run.runId,
    accountId: accountName ?? '',
    prepare: async () => {
      if (unsendable !== null || !account || accountName === undefined)
        throw new NonRetryableError(
          unsendable ?? 'APPROVALS_CHANNEL_UNAVAILABLE',
          `approval ${approval.approvalId}: its notices cannot be sent`,
        );
      // A missing credential is a refusal too (NonRetryableError): the tenant's to fix.
      const { sender } = await ctx.channels.sender(
        (ref) => ctx.secrets.resolve(run.projectId, ref),
        { projectId: run.projectId, accountId: accountName },
        account,
      );
      if (!sender.askApprover)
        throw new NonRetryableError(
          'APPROVALS_CHANNEL_UNAVAILABLE',
          `channel account "${accountName}" cannot ask approvers`,
        );
      return sender;
    },
    conversation: (row) => ({ id: row.recipient ?? '', kind: 'dm' }),
    method: () => ({ name: 'askApprover', dedupes: false }),
    call: async (sender, [row], method) => {
      const prompt: ApprovalPrompt = {
        approvalId: row!.approvalId!,
        text: row!.text,
        buttons: row!.buttons ?? ['rejected'],
      };
      const { externalMessageId } = await sender.askApprover!(row!.recipient!, prompt);
      return { method: method.name, externalMessageId };
    },
    recordSent: async (tx, row, result) => {
      await appendAudit(tx, {
        projectId: run.projectId,
        chain: `run:${run.runId}`,
        actor: ctx.actor,
        action: 'approval.notified',
        subject: `approval:${approval.approvalId}`,
        detail: {
          channel: accountName,
          recipient: `${prefix}:${row.recipient}`,
          message_id: result.externalMessageId ?? null,
        },
        traceId: run.traceId,
        runId: run.runId,
      });
    },
    logFields: { traceId: run.traceId, approvalId: approval.approvalId },
  };
  // One notice per call (`askApprover` asks one recipient); a refused one does not stop the
  // others, a retryable failure does (it is rethrown, the rest stay queued for the retry).
  for (const notice of pending) {
    const outcome = await sendLedgerBatch(outlet, [notice]);
    if (outcome.status === 'sent') report.sent += outcome.rows;
    if (outcome.status === 'uncertain') report.uncertain += outcome.rows;
    if (outcome.status === 'failed') report.failed += outcome.rows;
  }
  if (report.failed > 0)
    ctx.logger.warn(
      {
        runId: run.runId,
        approvalId: approval.approvalId,
        code: unsendable,
        failed: report.failed,
      },
      'approval notices not sent',
    );
  return report;
}

/**
 * What a notice of `approval` says and offers: its plain text and its buttons (Approve and
 * Reject, or Reject alone when the arguments had to be cut). Written on each notice's ledger
 * row when the approval is asked for, and sent as written.
 */
export function approvalPrompt(approval: Approval): {
  text: string;
  buttons: ApprovalPrompt['buttons'];
} {
  const { text, complete } = noticeText(approval);
  // An approver decides only on arguments they could read in full: a notice that had to cut
  // them offers Reject alone, and the text says where to see the rest.
  return { text, buttons: complete ? ['approved', 'rejected'] : ['rejected'] };
}

/**
 * The notice, in plain text (nothing in it is markup, so nothing needs escaping). The
 * arguments come last, so cutting an over-long notice never cuts the approval id.
 */
/**
 * Whether a notice can show an approval's arguments in full: only then may it be approved
 * from a channel's buttons (a client can send any button data, so the decider checks this too).
 */
export function fitsInNotice(approval: Approval): boolean {
  return noticeText(approval).complete;
}

function noticeText(approval: Approval): { text: string; complete: boolean } {
  const head = [
    'Approval needed',
    '',
    `Agent: ${approval.agent}`,
    `Tool: ${approval.tool}`,
    `Risk: ${approval.risk}`,
    `Why: ${approval.reasons.join(', ').slice(0, 500) || '-'}`,
    `Expires: ${new Date(approval.expiresAt).toISOString()}`,
    `Approval: ${approval.approvalId}`,
    `Call SHA-256: ${approval.callSha256}`,
    `Run: ${approval.runId}`,
    '',
    'Arguments:',
  ].join('\n');
  const room = Math.min(MAX_ARGUMENTS_CHARS, MAX_TEXT_CHARS - head.length - 20);
  const args = JSON.stringify(approval.arguments, null, 2);
  if (args.length <= room) return { text: `${head}\n${args}`, complete: true };
  const rest = `awooop approvals list --project ${approval.projectId} --run ${approval.runId} --json`;
  return {
    text: `${head}\n${args.slice(0, room)}\n… (cut: read them in full with \`${rest}\` or the API, and decide there)`,
    complete: false,
  };
}
