import { ChannelContract } from '../contracts/channelContract.ts';
import type { Attachment } from '../contracts/conversationEvent.ts';

/** An account's `media` caps. */
export type MediaCaps = ChannelContract['media'];

/** The caps an account gets when its contract sets none (the contract's defaults). */
export const DEFAULT_MEDIA_CAPS: MediaCaps = ChannelContract.parse({ type: 'api' }).media;

/**
 * An inbound message's attachments under the account's `media` caps, in the order sent: the
 * first `maxAttachments` are kept (one over `maxBytes` marked `too_large`), the rest marked
 * `too_many`. Nothing is dropped silently: a marked attachment stays in the list so the prompt
 * can say it was sent and why it was not looked at. A size the channel does not report is not
 * judged here (nothing is downloaded to learn it). At most 100 are listed, the event's limit.
 * Applying it twice gives the same list.
 */
export function capAttachments(
  attachments: readonly Attachment[],
  media: MediaCaps = DEFAULT_MEDIA_CAPS,
): Attachment[] {
  return attachments.slice(0, 100).map((attachment, i) => {
    if (i >= media.maxAttachments) return { ...attachment, omitted: 'too_many' };
    if (attachment.sizeBytes !== undefined && attachment.sizeBytes > media.maxBytes)
      return { ...attachment, omitted: 'too_large' };
    return attachment;
  });
}
