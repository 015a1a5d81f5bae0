import type { ChannelPlugin, InboundResult } from '../ChannelPlugin.ts';
import { formatForChannel } from '../../sanitize/formatForChannel.ts';
import { CHANNEL_TEXT_LIMITS } from '../../contracts/channelContract.ts';
import { AppError } from '../../errors.ts';
import { createSlackSender } from './createSlackSender.ts';
import { normalizeSlackEvent } from './normalizeSlackEvent.ts';

/** The `X-Slack-Retry-Num` of the last time Slack delivers an event. */
const SLACK_LAST_RETRY = 3;
import { readSlackInteraction, slackApprovalBlocks } from './slackApprovals.ts';
import { verifySlackSignature } from './verifySlackSignature.ts';

/** What {@link slackPlugin}'s `parse` makes of an interactivity request (a form body). */
type InteractionForm = { interaction: unknown };

/**
 * Slack over the Events API (HTTP): requests signed `v0` with the app's signing secret, on
 * one URL for both the Events API and Interactivity (Slack allows the same Request URL for
 * both): JSON events become runs, a `payload=` form is a Block Kit button press. Answers are
 * posted with `chat.postMessage` into the message's thread. Slack cannot recognise a repeated
 * `chat.postMessage`, so the send `dedupes: false`: a row whose sender died mid-call is
 * settled `uncertain`, never posted twice.
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
    statusNote: true,
    buttons: true,
    maxMessageChars: CHANNEL_TEXT_LIMITS.slack,
    batchSize: 1,
  },
  dialect: () => 'mrkdwn',
  delivery: () => 'send',
  format: (text, _account, limit) => formatForChannel(text, 'mrkdwn', limit),
  inbound: {
    signedBy: 'X-Slack-Signature (with X-Slack-Request-Timestamp within 5 minutes)',
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
    parse(raw, request) {
      const text = raw.toString('utf8');
      const type = request.headers['content-type'] ?? '';
      if (type.startsWith('application/x-www-form-urlencoded')) {
        const payload = new URLSearchParams(text).get('payload');
        return { interaction: parseJsonText(payload ?? '', 'payload') } satisfies InteractionForm;
      }
      return parseJsonText(text, 'body');
    },
    normalize(body, account): InboundResult {
      if (isInteractionForm(body)) {
        // Presses count only on an approvals account; elsewhere they are acknowledged, no more.
        const answer = account.approvals ? readSlackInteraction(body.interaction) : null;
        return answer
          ? { kind: 'approval', answer }
          : { kind: 'messages', batch: { events: [], ignored: 1 } };
      }
      const read = normalizeSlackEvent(body, account.media);
      return read.kind === 'challenge'
        ? { kind: 'answer', body: { challenge: read.challenge } }
        : { kind: 'messages', batch: read.batch };
    },
    // Slack retries an event three times (at once, after a minute, after five): the third
    // retry is its last, so only that one is absorbed rather than refused.
    overload: (_account, request) =>
      Number(request.headers['x-slack-retry-num'] ?? 0) >= SLACK_LAST_RETRY ? 'absorb' : 'refuse',
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
      tellMember: (recipient, text) =>
        slack.postMessage(recipient, escapeMrkdwn(text.slice(0, 3000))),
    };
  },
  approvals: { subjectPrefix: 'slack', via: 'slack' },
};

function isInteractionForm(body: unknown): body is InteractionForm {
  return typeof body === 'object' && body !== null && 'interaction' in body;
}

function parseJsonText(text: string, what: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    throw new AppError('MALFORMED_JSON', `${what} is not valid JSON: ${(error as Error).message}`, {
      status: 400,
    });
  }
}

/** The notification text of a prompt: Slack reads `&`, `<` and `>` as markup there. */
function escapeMrkdwn(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}
