import { randomBytes, randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { DatabasePool } from 'slonik';
import { acceptEvent } from '../db/runs.ts';
import { withProject } from '../db/withProject.ts';
import type { NormalizedInbound } from '../pipeline/channels/inboundTypes.ts';
import type { ChannelType } from '../pipeline/contracts/common.ts';
import { ConversationEvent } from '../pipeline/contracts/conversationEvent.ts';
import type { Enqueue } from '../pipeline/stages/StageContext.ts';

/** What the durable write needs. */
export type AcceptDeps = {
  pool: DatabasePool;
  enqueue: Enqueue;
  logger: Logger;
  runTimeoutMs?: number;
};

/** The run an inbound event became, and whether this request created it. */
export type Accepted = { runId: string; created: boolean };

/**
 * Makes each inbound event durable — event and run in one transaction, deduped on the
 * channel's event id — and only then enqueues its first stage. Returns once every event is
 * committed, so the caller answers 2xx only for what cannot be lost. A duplicate (a retried
 * or concurrent copy) gets the existing run and enqueues nothing. If the enqueue fails after
 * the commit, the run is still in Postgres and the sweeper enqueues it.
 */
export async function acceptInbound(
  deps: AcceptDeps,
  source: { projectId: string; channel: ChannelType; accountId: string; traceId: string },
  events: readonly NormalizedInbound[],
): Promise<Accepted[]> {
  const accepted: Accepted[] = [];
  for (const [i, inbound] of events.entries()) {
    // One trace per run: the request's trace for the first event, fresh ones for the rest.
    const traceId = i === 0 ? source.traceId : randomBytes(16).toString('hex');
    const event = ConversationEvent.parse({
      ...inbound,
      eventId: randomUUID(),
      projectId: source.projectId,
      traceId,
      channel: source.channel,
      accountId: source.accountId,
      receivedAt: new Date().toISOString(),
    });
    const result = await withProject(deps.pool, source.projectId, (tx) =>
      acceptEvent(tx, event, { runId: randomUUID(), runTimeoutMs: deps.runTimeoutMs ?? 300_000 }),
    );
    accepted.push(result);
    if (!result.created) continue;
    try {
      await deps.enqueue('resolve', {
        projectId: source.projectId,
        runId: result.runId,
        traceId,
        stage: 'resolve',
      });
    } catch (error) {
      deps.logger.warn(
        { runId: result.runId, err: (error as Error).message },
        'enqueue failed after commit; the sweeper will pick the run up',
      );
    }
  }
  return accepted;
}
