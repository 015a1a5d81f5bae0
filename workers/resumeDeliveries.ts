import type { Queue } from 'bullmq';
import { stageJobId } from '../pipeline/contracts/runState.ts';
import type { WaitingDelivery } from '../pipeline/channelManager/createChannelManager.ts';
import type { Enqueue } from '../pipeline/Enqueue.ts';

/**
 * Puts the deliver jobs of a started account's waiting runs back to work at once: a job that
 * waits out its stopped account (delayed) is promoted, a missing one (Redis flushed, or the
 * job ended) is enqueued. Harmless twice: job ids are per run, and deliver sends only what
 * the ledger still holds as queued.
 */
export async function resumeDeliveries(
  deliver: Queue,
  enqueue: Enqueue,
  runs: readonly WaitingDelivery[],
): Promise<void> {
  for (const run of runs) {
    const job = await deliver.getJob(stageJobId('deliver', run.runId, run.notice));
    if (job && (await job.isDelayed())) {
      // promote() refuses a job that left the delayed set meanwhile: it is running already.
      await job.promote().catch(() => undefined);
      continue;
    }
    if (job) continue;
    await enqueue(
      'deliver',
      { projectId: run.projectId, runId: run.runId, traceId: run.traceId, stage: 'deliver' },
      { notice: run.notice },
    );
  }
}
