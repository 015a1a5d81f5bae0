import { appendAudit } from '../../db/auditEvents.ts';
import {
  activeRetentionDays,
  removeExpiredText,
  RETENTION_BATCH_SIZE,
  type RemovedText,
} from '../../db/runText.ts';
import { listProjectIds } from '../../db/sweeperQueries.ts';
import { withProject } from '../../db/withProject.ts';
import { withSweeper } from '../../db/withSweeper.ts';
import type { Context } from '../context.ts';

/** What one retention pass removed in one project. */
export type RetentionReport = { projectId: string; days: number } & RemovedText;

/**
 * The retention pass: in every project whose active project contract sets
 * `dataBoundary.retentionDays`, blanks the message text of runs that ended more than that many
 * days ago (`removeExpiredText`: events, outputs, checkpoints, tool and approval arguments,
 * outbound rows), and writes one `retention.applied` audit row per project that lost any,
 * with the counts per table (never the text). The rows themselves, their ids, digests and
 * times, and every audit row stay, so the audit chain still verifies.
 * Harmless twice: runs whose text is gone are skipped, and a pass that removed nothing in a
 * project writes no audit row there.
 */
export async function applyRetention(
  ctx: Pick<Context, 'pool'> & { actor: string },
): Promise<RetentionReport[]> {
  const projects = await withSweeper(ctx.pool, listProjectIds);
  const reports: RetentionReport[] = [];
  for (const { projectId } of projects) {
    const report = await withProject(ctx.pool, projectId, async (tx) => {
      const days = await activeRetentionDays(tx, projectId);
      if (days === null) return null;
      const total: RemovedText = {
        runs: 0,
        events: 0,
        steps: 0,
        toolCalls: 0,
        approvals: 0,
        outbound: 0,
      };
      for (;;) {
        const batch = await removeExpiredText(tx, { projectId, days });
        for (const key of Object.keys(total) as (keyof RemovedText)[]) total[key] += batch[key];
        if (batch.runs < RETENTION_BATCH_SIZE) break;
      }
      if (total.runs === 0) return null;
      await appendAudit(tx, {
        projectId,
        chain: 'retention',
        actor: ctx.actor,
        action: 'retention.applied',
        subject: `project:${projectId}`,
        detail: {
          retention_days: days,
          runs: total.runs,
          events: total.events,
          steps: total.steps,
          tool_calls: total.toolCalls,
          approvals: total.approvals,
          outbound: total.outbound,
        },
      });
      return { projectId, days, ...total };
    });
    if (report) reports.push(report);
  }
  return reports;
}
