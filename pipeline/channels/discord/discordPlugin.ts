import { createHash } from 'node:crypto';
import type { ChannelPlugin } from '../ChannelPlugin.ts';
import { CHANNEL_TEXT_LIMITS } from '../../contracts/channelContract.ts';
import { formatForChannel } from '../../sanitize/formatForChannel.ts';
import { createDiscordSender } from './createDiscordSender.ts';
import { discordApprovalComponents, readDiscordInteraction } from './discordInteractions.ts';
import { openDiscordGateway } from './openDiscordGateway.ts';
import { verifyDiscordSignature } from './verifyDiscordSignature.ts';

/**
 * How long after a chunk was queued Discord is still trusted to drop a repeat of its nonce
 * (its documentation says "the past few minutes"). A chunk taken over from a dead sender
 * within this is sent again, deduped by Discord; after it, it is settled `uncertain`.
 */
export const DISCORD_NONCE_WINDOW_MS = 3 * 60_000;

/** Discord shows at most 4096 characters in an embed's description. */
const EMBED_DESCRIPTION_MAX = 4096;

/**
 * Discord: messages (mentions of the bot in guild channels and their threads, and DMs) arrive
 * over the Gateway WebSocket, which the ChannelManager holds through `connection`; button
 * presses arrive on the Interactions endpoint (`/webhooks/discord/:project/:account`, Ed25519
 * signed by the application's public key). Answers are posted through the REST API as replies
 * to the message, in its channel or thread, in Discord markdown with the rest escaped, at most
 * 2000 characters each. Each row goes out with a nonce made from its ledger id and
 * `enforce_nonce`, so Discord drops a repeat within minutes: a row taken over from a dead
 * sender within {@link DISCORD_NONCE_WINDOW_MS} of being queued `dedupes`, after that it is
 * settled `uncertain`, never posted twice.
 */
export const discordPlugin: ChannelPlugin<'discord'> = {
  type: 'discord',
  displayName: 'Discord',
  capabilities: {
    // A Discord thread is a channel of its own: its id is the conversation's, no thread id.
    threads: false,
    // An edit is a MESSAGE_UPDATE, which is never read: no run.
    edits: false,
    // POST /channels/{id}/typing, shown for up to 10 s; the status note follows a slow run.
    typing: true,
    statusNote: true,
    buttons: true,
    maxMessageChars: CHANNEL_TEXT_LIMITS.discord,
    batchSize: 1,
  },
  dialect: () => 'discord',
  delivery: () => 'send',
  format: (text, _account, limit) => formatForChannel(text, 'discord', limit),
  inbound: {
    signedBy: 'X-Signature-Ed25519 (with X-Signature-Timestamp within 5 minutes)',
    async verify(request, account) {
      const signature = request.headers['x-signature-ed25519'];
      const timestamp = request.headers['x-signature-timestamp'];
      if (signature === undefined || timestamp === undefined) return false;
      return verifyDiscordSignature(
        await request.rawBody(),
        account.publicKey,
        { signature, timestamp },
        request.receivedAt.getTime(),
      );
    },
    normalize: (body, account) =>
      readDiscordInteraction(body, {
        applicationId: account.applicationId,
        approvals: account.approvals,
      }),
  },
  credentials: (account) => [account.botToken],
  createSender(account, [token]) {
    const discord = createDiscordSender({ token: token ?? '', apiBaseUrl: account.apiBaseUrl });
    return {
      methodFor: (rows, { now }) => ({
        name: 'createMessage',
        dedupes: rows.every((r) => now - r.createdAt < DISCORD_NONCE_WINDOW_MS),
      }),
      async send(rows, _method, { event }) {
        const row = rows[0]!;
        const sent = await discord.createMessage(event.conversation.id, {
          content: row.text,
          // The first message of each kind answers the user's; the rest follow it.
          replyTo: row.chunkIndex === 0 ? event.externalEventId : undefined,
          nonce: nonceOf(row.messageId),
        });
        return { method: 'createMessage', externalMessageId: sent.externalMessageId };
      },
      async typing({ event }) {
        await discord.typing(event.conversation.id);
      },
      async askApprover(recipient, prompt) {
        const channelId = await discord.openDm(recipient);
        // The prompt is plain text: shown in a code block, where nothing is markup; a ``` in
        // it is broken up so it cannot close the block.
        const body = `\`\`\`\n${prompt.text.replaceAll('```', '`\u200b`\u200b`')}\n\`\`\``;
        const whole = body.length <= EMBED_DESCRIPTION_MAX;
        const description = whole ? body : `${body.slice(0, EMBED_DESCRIPTION_MAX - 5)}…\n\`\`\``;
        return discord.createMessage(channelId, {
          content: 'Approval needed',
          embeds: [{ description }],
          // An approver decides only on what they could read whole.
          components: discordApprovalComponents(
            whole ? prompt : { ...prompt, buttons: prompt.buttons.filter((b) => b !== 'approved') },
          ),
          nonce: nonceOf(`${prompt.approvalId}:${recipient}`),
        });
      },
      async tellMember(recipient, text) {
        const channelId = await discord.openDm(recipient);
        return discord.createMessage(channelId, {
          content: formatForChannel(text, 'discord', 2000)[0] ?? text.slice(0, 2000),
          nonce: nonceOf(`tell:${recipient}:${text}`),
        });
      },
      acknowledge(answer, text) {
        const [channelId, messageId] = answer.answerId.split(':');
        if (!channelId) return Promise.resolve();
        // Not awaited: the press must be answered within 3 s, and this is best effort (a
        // reply under the prompt, telling the presser what became of it).
        void discord
          .createMessage(channelId, {
            content: formatForChannel(text, 'discord', 2000)[0] ?? 'Done',
            replyTo: messageId || undefined,
          })
          .catch(() => {});
        return Promise.resolve();
      },
    };
  },
  approvals: { subjectPrefix: 'discord', via: 'discord' },
  connection: {
    credentials: (account) => [account.botToken],
    open: (account, [token], sink) => openDiscordGateway(account, token ?? '', sink),
    // Discord replays nothing the Gateway sent once the session moves on, and the session
    // cannot be held still for one message: a message past a limit is written and its run
    // delayed, never refused.
    overload: 'absorb',
  },
};

/** A Discord nonce (at most 25 characters) that is the same for every try of one message. */
function nonceOf(id: string): string {
  return createHash('sha256').update(id).digest('base64url').slice(0, 25);
}
