import { randomBytes } from 'node:crypto';
import type { Queue } from 'bullmq';
import { acceptInbound } from '../ingress/acceptInbound.ts';
import { decideFromChannel } from '../pipeline/approvals/decideFromChannel.ts';
import {
  createChannelManager,
  type ChannelManager,
} from '../pipeline/channelManager/createChannelManager.ts';
import type { Admission } from '../pipeline/admission/createAdmission.ts';
import type { Enqueue } from '../pipeline/Enqueue.ts';
import type { StageContext } from '../pipeline/StageContext.ts';
import { resumeDeliveries } from '../workers/resumeDeliveries.ts';

/**
 * The ChannelManager of a process, wired to the same durable accept and approval decision the
 * webhook routes use, and to the deliver queue for resuming a started account's sends.
 */
export function wireChannelManager(
  ctx: StageContext,
  {
    enqueue,
    deliver,
    admission,
  }: { enqueue: Enqueue; deliver: Queue; admission?: Admission | undefined },
): ChannelManager {
  return createChannelManager({
    ...ctx,
    // Harmless twice: acceptInbound keys each event on its external id, so a message a
    // connection hands over again (a RESUME replay) finds its run and makes none.
    async accept({ projectId, accountId, channel }, batch) {
      const accepted = await acceptInbound(
        { ...ctx, enqueue, admission },
        {
          projectId,
          channel: channel.type,
          accountId,
          traceId: randomBytes(16).toString('hex'),
          limits: channel.limits,
          overload: ctx.channels.find(channel.type)?.connection?.overload ?? 'refuse',
        },
        batch.events,
      );
      return { runs: accepted.map((a) => a.runId), duplicate: accepted.some((a) => !a.created) };
    },
    // Harmless twice: decideApproval decides a pending approval once.
    async decide({ projectId, accountId, channel }, answer) {
      await decideFromChannel({ ...ctx, enqueue }, { projectId, accountId, channel, answer });
    },
    resume: (runs) => resumeDeliveries(deliver, enqueue, runs),
  });
}
