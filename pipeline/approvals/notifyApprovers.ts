import {
  claimApprovalNotice,
  listNoticesForApproval,
  settleApprovalNotice,
  type Approval,
} from '../../db/approvals.ts';
import { appendAudit } from '../../db/auditEvents.ts';
import type { Run } from '../../db/runs.ts';
import { withProject } from '../../db/withProject.ts';
import { paceTelegramSend } from '../channels/sendRateLimiter.ts';
import { approvalCallbackData } from '../channels/telegram/readApprovalCallback.ts';
import {
  createTelegramSender,
  type TelegramSender,
} from '../channels/telegram/createTelegramSender.ts';
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
 * The Telegram chat ids to ask for an approval: the project's ACL members with a
 * `telegram:<user id>` subject whose roles include `approvals.approverRole` or `admin` (a
 * user's private chat with the bot has the user's id). Empty unless `approvals.channel` names
 * a channel account; with `channels` (the project's accounts by name, or just the approvals
 * one) also unless that account is a Telegram account with `approvals: true`.
 */
export function approverRecipients(
  project: ProjectContract,
  channels?: Readonly<Record<string, ChannelContract | null | undefined>>,
): string[] {
  const name = project.approvals.channel;
  if (name === undefined) return [];
  if (channels !== undefined) {
    const account = channels[name];
    if (!account || account.type !== 'telegram' || !account.approvals) return [];
  }
  const ids = project.acl.members
    .filter((m) => m.subject.startsWith('telegram:') && isApprover(project, m.subject))
    .map((m) => m.subject.slice('telegram:'.length));
  return [...new Set(ids)];
}

/** What one {@link notifyApprovers} call did with the approval's notices. */
export type NotifyReport = {
  sent: number;
  /** Sends that may or may not have arrived (an answer lost, a sender died mid-call). */
  uncertain: number;
  /** Notices Telegram refused, or that could not be sent at all (no approvals channel). */
  failed: number;
};

/**
 * Sends an approval's queued notices (`approval_notices`, one per approver) through the
 * project's approvals channel: a plain-text message naming the agent, tool, risk, arguments,
 * reasons, expiry and approval id, with Approve / Reject buttons (`ap:<id>:y|n`). Each
 * notice is claimed before its send and settled after it: `sent` (with Telegram's message id
 * and an `approval.notified` audit row), `uncertain` when the call may have gone out, `failed`
 * when Telegram refuses it (logged; the run goes on waiting). A retryable failure (429, 5xx,
 * no connection) puts the notice back to `queued` and is rethrown, so the job retries.
 * Notices of an approval no longer pending, or with no usable approvals channel (none, not
 * Telegram with `approvals: true`, or its bot token missing), are settled `failed` unsent.
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
  const telegram = account?.type === 'telegram' && account.approvals ? account : null;
  let unsendable: ErrorCode | null =
    approval.status !== 'pending'
      ? APPROVAL_DECIDED_CODES[approval.status]
      : approval.expiresAt <= ctx.now()
        ? 'APPROVAL_EXPIRED'
        : !telegram || accountName === undefined
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

  let sender: TelegramSender | undefined;
  if (unsendable === null && telegram) {
    try {
      sender = createTelegramSender({
        token: await ctx.secrets.resolve(run.projectId, telegram.botToken),
        ...(telegram.apiRoot ? { apiRoot: telegram.apiRoot } : {}),
      });
    } catch (error) {
      // A missing bot token is the tenant's to fix; retrying would not find it either.
      if (!(error instanceof NonRetryableError)) throw error;
      unsendable = error.code;
    }
  }

  if (unsendable !== null || !sender || accountName === undefined) {
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
  const replyMarkup = {
    inline_keyboard: [
      [
        ...(complete
          ? [
              {
                text: 'Approve',
                callback_data: approvalCallbackData(approval.approvalId, 'approved'),
              },
            ]
          : []),
        { text: 'Reject', callback_data: approvalCallbackData(approval.approvalId, 'rejected') },
      ],
    ],
  };
  for (const notice of pending) {
    // The send slot is waited for before the claim: a worker that dies while it waits leaves
    // the notice queued, to be sent by the next try, not `uncertain`.
    if (notice.status === 'queued')
      await paceTelegramSend(ctx.redis, ctx.redisPrefix, {
        projectId: run.projectId,
        accountId: accountName,
        chatId: notice.recipient,
        isGroup: false,
      });
    if (!(await claim(notice.recipient))) continue;
    let messageId: string;
    try {
      ({ externalMessageId: messageId } = await sender.sendText(notice.recipient, text, {
        parseMode: 'plain',
        replyMarkup,
      }));
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
          'Telegram refused an approval notice; the run keeps waiting',
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
          recipient: `telegram:${notice.recipient}`,
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
 * from Telegram (a client can send any button data, so the decider checks this too).
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
