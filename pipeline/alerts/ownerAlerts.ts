import type { CommonQueryMethods } from 'slonik';
import { appendAudit } from '../../db/auditEvents.ts';
import { enqueueOwnerAlerts, type OutboundRow } from '../../db/outboundMessages.ts';
import type { Run } from '../../db/runs.ts';
import { withProject } from '../../db/withProject.ts';
import type { ChannelRegistry } from '../channels/ChannelPlugin.ts';
import { sendLedgerBatch, type Outlet } from '../channels/sendLedgerBatch.ts';
import type { ChannelContract } from '../contracts/channelContract.ts';
import type { ProjectContract } from '../contracts/projectContract.ts';
import { NonRetryableError } from '../errors.ts';
import type { StageContext } from '../StageContext.ts';

/**
 * The recipient ids to tell an alert: the project's owners, ACL members with the `admin`
 * role, whose subject has the prefix of the approvals account's own plugin (`telegram:<user
 * id>`, `slack:<user id>`, `discord:<user id>`), asked where approvers are asked. Empty
 * without an approvals account whose plugin can tell members.
 */
export function ownerRecipients(
  project: ProjectContract,
  registry: ChannelRegistry,
  account: ChannelContract | null | undefined,
): string[] {
  if (!account) return [];
  const prefix = registry.find(account.type)?.approvals?.subjectPrefix;
  if (prefix === undefined) return [];
  const ids = project.acl.members.flatMap((m) =>
    m.subject.startsWith(`${prefix}:`) && m.roles.includes('admin')
      ? [m.subject.slice(prefix.length + 1)]
      : [],
  );
  return [...new Set(ids)];
}

/** The approvals account's active contract, or null when the project names none. */
async function approvalsAccount(
  ctx: Pick<StageContext, 'contracts'>,
  db: CommonQueryMethods,
  projectId: string,
  project: ProjectContract,
): Promise<ChannelContract | null> {
  const name = project.approvals.channel;
  if (name === undefined) return null;
  const found = await ctx.contracts.active(db, { projectId, kind: 'channel', name });
  return found?.body ?? null;
}

/**
 * Queues an alert to each of the project's owners, in the caller's transaction (the one that
 * recorded the alert, so the alert and its rows commit together): an `alert` row of the
 * outbound ledger per owner, sent by the run's deliver stage. None to tell (no approvals
 * account, no admin on its channel) is logged; the audit row and the log line stay the
 * record. Harmless twice: the (project, alert key, recipient) key keeps the rows already there.
 */
export async function queueOwnerAlert(
  ctx: Pick<StageContext, 'contracts' | 'channels' | 'logger'>,
  tx: CommonQueryMethods,
  run: Run,
  project: ProjectContract,
  alert: { alertKey: string; text: string },
): Promise<number> {
  const account = await approvalsAccount(ctx, tx, run.projectId, project);
  const recipients = ownerRecipients(project, ctx.channels, account);
  if (recipients.length === 0) {
    ctx.logger.warn(
      { projectId: run.projectId, runId: run.runId, alert: alert.alertKey },
      'no owner can be told a budget alert on a channel (an admin on the approvals account)',
    );
    return 0;
  }
  await enqueueOwnerAlerts(tx, run, alert, recipients);
  return recipients.length;
}

/**
 * Sends a run's queued owner alerts through the project's approvals account (its active
 * revision), one `tellMember` call each, through {@link sendLedgerBatch}: `sent` with a
 * `budget.alert_sent` audit row in the same transaction, `uncertain` when the call may have
 * gone out (never repeated), `failed` when the channel refuses it or no account can send it.
 * Never throws: the run's own answer is what the stage is for, so a failure to tell an owner
 * is logged and a retryable one leaves the row `queued` (shown by `runs show`).
 * Harmless twice: a row is sent only by whoever claims it from `queued`.
 */
export async function sendOwnerAlerts(
  ctx: StageContext,
  run: Run,
  rows: readonly OutboundRow[],
): Promise<void> {
  const pending = rows.filter((r) => r.kind === 'alert' && r.status === 'queued');
  if (pending.length === 0) return;
  try {
    const { project, account } = await withProject(ctx.pool, run.projectId, async (tx) => {
      const found = await ctx.contracts.active(tx, {
        projectId: run.projectId,
        kind: 'project',
        name: 'project',
      });
      return {
        project: found?.body ?? null,
        account: found ? await approvalsAccount(ctx, tx, run.projectId, found.body) : null,
      };
    });
    const accountName = project?.approvals.channel;
    const prefix = account ? (ctx.channels.find(account.type)?.approvals?.subjectPrefix ?? '') : '';
    const outlet: Outlet = {
      ctx,
      projectId: run.projectId,
      runId: run.runId,
      accountId: accountName ?? '',
      prepare: async () => {
        if (!account || accountName === undefined)
          throw new NonRetryableError(
            'APPROVALS_CHANNEL_UNAVAILABLE',
            'the project has no approvals account to tell its owners on',
          );
        // A missing credential is a refusal too (NonRetryableError): the tenant's to fix.
        const { sender } = await ctx.channels.sender(
          (ref) => ctx.secrets.resolve(run.projectId, ref),
          { projectId: run.projectId, accountId: accountName },
          account,
        );
        if (!sender.tellMember)
          throw new NonRetryableError(
            'APPROVALS_CHANNEL_UNAVAILABLE',
            `channel account "${accountName}" cannot tell members`,
          );
        return sender;
      },
      conversation: (row) => ({ id: row.recipient ?? '', kind: 'dm' }),
      method: () => ({ name: 'tellMember', dedupes: false }),
      call: async (sender, [row], method) => {
        const { externalMessageId } = await sender.tellMember!(row!.recipient!, row!.text);
        return { method: method.name, externalMessageId };
      },
      recordSent: async (tx, row, result) => {
        await appendAudit(tx, {
          projectId: run.projectId,
          chain: `budget:${row.alertKey?.split('/')[0] ?? ''}`,
          actor: ctx.actor,
          action: 'budget.alert_sent',
          subject: row.alertKey ?? '',
          detail: {
            channel: accountName ?? null,
            recipient: `${prefix}:${row.recipient}`,
            message_id: result.externalMessageId ?? null,
          },
          traceId: run.traceId,
          runId: run.runId,
        });
      },
      logFields: { traceId: run.traceId, alert: true },
    };
    for (const row of pending) {
      const outcome = await sendLedgerBatch(outlet, [row]);
      if (outcome.status === 'failed')
        ctx.logger.warn(
          { runId: run.runId, alert: row.alertKey, code: outcome.code },
          'budget alert not sent to an owner',
        );
    }
  } catch (error) {
    ctx.logger.warn(
      {
        runId: run.runId,
        projectId: run.projectId,
        err: error instanceof Error ? error.message : String(error),
      },
      'budget alert not sent to an owner; its row stays queued',
    );
  }
}
