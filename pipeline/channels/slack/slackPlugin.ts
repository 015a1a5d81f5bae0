import type { ChannelPlugin } from '../ChannelPlugin.ts';
import { formatForChannel } from '../../sanitize/formatForChannel.ts';
import { CHANNEL_TEXT_LIMITS } from '../../contracts/channelContract.ts';
import { createSlackSender } from './createSlackSender.ts';
import { slackApprovalBlocks } from './slackApprovals.ts';
import { normalizeSlackEvent } from './normalizeSlackEvent.ts';
import { verifySlackSignature } from './verifySlackSignature.ts';

/**
 * Slack over the Events API (HTTP): inbound requests signed `v0` with the app's signing
 * secret, answers posted with `chat.postMessage` into the message's thread. Slack cannot
 * recognise a repeated `chat.postMessage`, so the send `dedupes: false`: a row whose sender
 * died mid-call is settled `uncertain`, never posted twice.
 */
export const slackPlugin: ChannelPlugin<'slack'> = {
  type: 'slack',
  displayName: 'Slack',
  capabilities: {
    threads: true,
    // An edit arrives as a `message_changed` subtype: ignored, never a run.
    edits: false,
    // Bots have no typing indicator on the Events API.
    typing: false,
    buttons: true,
    maxMessageChars: CHANNEL_TEXT_LIMITS.slack,
    batchSize: 1,
  },
  dialect: () => 'mrkdwn',
  delivery: () => 'send',
  format: (text, _account, limit) => formatForChannel(text, 'mrkdwn', limit),
  inbound: {
    async verify(request, account, secret) {
      const signature = request.headers['x-slack-signature'];
      const timestamp = request.headers['x-slack-request-timestamp'];
      if (signature === undefined || timestamp === undefined) return false;
      const signingSecret = await secret(account.signingSecret);
      return verifySlackSignature(
        await request.rawBody(),
        signingSecret,
        { signature, timestamp },
        request.receivedAt.getTime(),
      );
    },
    normalize(body) {
      const read = normalizeSlackEvent(body);
      return read.kind === 'challenge'
        ? { kind: 'answer', body: { challenge: read.challenge } }
        : { kind: 'messages', batch: read.batch };
    },
  },
  credentials: (account) => [account.botToken],
  createSender(account, [token]) {
    const slack = createSlackSender({ token: token ?? '', apiBaseUrl: account.apiBaseUrl });
    return {
      methodFor: () => ({ name: 'chat.postMessage', dedupes: false }),
      async send(rows, _method, { event }) {
        const row = rows[0]!;
        const sent = await slack.postMessage(event.conversation.id, row.text, {
          threadTs: event.conversation.threadId,
        });
        return { method: 'chat.postMessage', externalMessageId: sent.externalMessageId };
      },
      // A user id as the channel posts into the app's direct messages with that user.
      askApprover: (recipient, prompt) =>
        slack.postMessage(recipient, escapeMrkdwn(prompt.text.slice(0, 3000)), {
          blocks: slackApprovalBlocks(prompt),
        }),
    };
  },
  approvals: { subjectPrefix: 'slack' },
};

/** The notification text of a prompt: Slack reads `&`, `<` and `>` as markup there. */
function escapeMrkdwn(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}
