import {
  claimApprovalNotice,
  listNoticesForApproval,
  settleApprovalNotice,
  type Approval,
} from '../../db/approvals.ts';
import { appendAudit } from '../../db/auditEvents.ts';
import type { Run } from '../../db/runs.ts';
import { withProject } from '../../db/withProject.ts';
import type {
  ApprovalPrompt,
  ChannelPlugin,
  ChannelRegistry,
  ChannelSender,
} from '../channels/ChannelPlugin.ts';
import type { ChannelContract } from '../contracts/channelContract.ts';
import type { ProjectContract } from '../contracts/projectContract.ts';
import type { ContractBodies } from '../contracts/tenantFile.ts';
import { AppError, NonRetryableError } from '../errors.ts';
import type { StageContext } from '../StageContext.ts';
import { isApprover } from './isApprover.ts';
import type { ErrorCode } from '../errorCodes.ts';

/** A notice's failure code when its approval was decided before the notice went out. */
const APPROVAL_DECIDED_CODES = {
  approved: 'APPROVAL_APPROVED',
  rejected: 'APPROVAL_REJECTED',
  expired: 'APPROVAL_EXPIRED',
} as const satisfies Record<string, ErrorCode>;

/** How long a claimed notice is held before another sender may settle it `uncertain`. */
const LEASE_MS = 60_000;
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
 * `<prefix>:<user id>` subject whose roles include `approvals.approverRole` or `admin`, where
 * the prefix is the approvals channel plugin's `subjectPrefix` (`telegram`: a user's private
 * chat with the bot has the user's id). Empty unless `approvals.channel` names a channel
 * account; with `channels` (the project's accounts by name, or just the approvals one) also
 * unless that account has `approvals: true` on a plugin that can ask approvers. Without
 * `channels`, the prefixes of every registered plugin that can ask (Telegram alone today).
 */
export function approverRecipients(
  project: ProjectContract,
  registry: ChannelRegistry,
  channels?: Readonly<Record<string, ChannelContract | null | undefined>>,
): string[] {
  const name = project.approvals.channel;
  if (name === undefined) return [];
  const prefixes: string[] = [];
  if (channels !== undefined) {
    const plugin = approvalsPlugin(registry, channels[name]);
    if (!plugin?.approvals) return [];
    prefixes.push(plugin.approvals.subjectPrefix);
  } else {
    for (const type of registry.types()) {
      const adapter = registry.plugin(type).approvals;
      if (adapter && registry.plugin(type).capabilities.buttons)
        prefixes.push(adapter.subjectPrefix);
    }
  }
  const ids = project.acl.members.flatMap((m) => {
    const prefix = prefixes.find((p) => m.subject.startsWith(`${p}:`));
    return prefix !== undefined && isApprover(project, m.subject)
      ? [m.subject.slice(prefix.length + 1)]
      : [];
  });
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
 * Sends an approval's queued notices (`approval_notices`, one per approver) through the
 * project's approvals channel, by its plugin's `askApprover` on the account's cached sender:
 * a plain-text message naming the agent, tool, risk, arguments, reasons, expiry and approval
 * id, with Approve / Reject buttons (Telegram: `ap:<id>:y|n`). Each
 * notice is claimed before its send and settled after it: `sent` (with the channel's message id
 * and an `approval.notified` audit row), `uncertain` when the call may have gone out, `failed`
 * when the channel refuses it (logged; the run goes on waiting). A retryable failure (429, 5xx,
 * no connection) puts the notice back to `queued` and is rethrown, so the job retries.
 * Notices of an approval no longer pending, or with no usable approvals channel (none, no
 * `approvals: true`, a plugin that cannot ask approvers, or its credentials missing), are
 * settled `failed` unsent.
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
    const notices = await listNoticesForApproval(tx, approval.approvalId);
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
  const asking = plugin && account ? account : null;
  let unsendable: ErrorCode | null =
    approval.status !== 'pending'
      ? APPROVAL_DECIDED_CODES[approval.status]
      : approval.expiresAt <= ctx.now()
        ? 'APPROVAL_EXPIRED'
        : !asking || accountName === undefined
          ? 'APPROVALS_CHANNEL_UNAVAILABLE'
          : null;

  const settle = (
    recipient: string,
    outcome: Omit<Parameters<typeof settleApprovalNotice>[1], 'approvalId' | 'recipient'>,
  ) =>
    withProject(ctx.pool, run.projectId, (tx) =>
      settleApprovalNotice(tx, { approvalId: approval.approvalId, recipient, ...outcome }),
    );
  const claim = (recipient: string) =>
    withProject(ctx.pool, run.projectId, (tx) =>
      claimApprovalNotice(tx, approval.approvalId, recipient, LEASE_MS),
    );

  let sender: ChannelSender<ChannelContract['type']> | undefined;
  if (unsendable === null && asking && accountName !== undefined) {
    try {
      ({ sender } = await ctx.channels.sender(
        (ref) => ctx.secrets.resolve(run.projectId, ref),
        { projectId: run.projectId, accountId: accountName },
        asking,
      ));
    } catch (error) {
      // A missing credential is the tenant's to fix; retrying would not find it either.
      if (!(error instanceof NonRetryableError)) throw error;
      unsendable = error.code;
    }
  }

  const ask = sender?.askApprover?.bind(sender);
  const prefix = plugin?.approvals?.subjectPrefix;
  if (unsendable !== null || !sender || !ask || !prefix || accountName === undefined) {
    for (const notice of pending) {
      if (!(await claim(notice.recipient))) continue;
      await settle(notice.recipient, { status: 'failed', errorCode: unsendable });
      report.failed += 1;
    }
    ctx.logger.warn(
      { runId: run.runId, approvalId: approval.approvalId, code: unsendable },
      'approval notices not sent',
    );
    return report;
  }

  const { text, complete } = noticeText(approval);
  // An approver decides only on arguments they could read in full: a notice that had to cut
  // them offers Reject alone, and the text says where to see the rest.
  const prompt: ApprovalPrompt = {
    approvalId: approval.approvalId,
    text,
    buttons: complete ? ['approved', 'rejected'] : ['rejected'],
  };
  for (const notice of pending) {
    // The send slot is waited for before the claim: a worker that dies while it waits leaves
    // the notice queued, to be sent by the next try, not `uncertain`.
    if (notice.status === 'queued')
      await sender.pace?.(ctx, {
        projectId: run.projectId,
        accountId: accountName,
        conversation: { id: notice.recipient, kind: 'dm' },
      });
    if (!(await claim(notice.recipient))) continue;
    let messageId: string;
    try {
      ({ externalMessageId: messageId } = await ask(notice.recipient, prompt));
    } catch (error) {
      const code = error instanceof AppError ? error.code : 'SEND_FAILED';
      const log = { runId: run.runId, approvalId: approval.approvalId, code };
      if (code === 'CHANNEL_UNCERTAIN') {
        await settle(notice.recipient, { status: 'uncertain', errorCode: code });
        ctx.logger.warn(log, 'an approval notice may not have arrived');
        report.uncertain += 1;
        continue;
      }
      if (error instanceof NonRetryableError) {
        await settle(notice.recipient, { status: 'failed', errorCode: code });
        ctx.logger.warn(
          { ...log, err: error.message },
          'the channel refused an approval notice; the run keeps waiting',
        );
        report.failed += 1;
        continue;
      }
      // Not sent (a 429, a 5xx, a refused connection): back to queued for the retry.
      await settle(notice.recipient, { status: 'queued', errorCode: code });
      throw error;
    }
    // Sent: a failure from here on leaves the notice `sending`; its lease runs out and the
    // next call settles it `uncertain`, never sends it again.
    await withProject(ctx.pool, run.projectId, async (tx) => {
      await settleApprovalNotice(tx, {
        approvalId: approval.approvalId,
        recipient: notice.recipient,
        status: 'sent',
        externalMessageId: messageId,
      });
      await appendAudit(tx, {
        projectId: run.projectId,
        chain: `run:${run.runId}`,
        actor: ctx.actor,
        action: 'approval.notified',
        subject: `approval:${approval.approvalId}`,
        detail: {
          channel: accountName,
          recipient: `${prefix}:${notice.recipient}`,
          message_id: messageId,
        },
        traceId: run.traceId,
        runId: run.runId,
      });
    });
    report.sent += 1;
  }
  return report;
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
