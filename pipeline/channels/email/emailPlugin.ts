import { CHANNEL_TEXT_LIMITS } from '../../contracts/channelContract.ts';
import { formatForChannel } from '../../sanitize/formatForChannel.ts';
import type { ChannelPlugin } from '../ChannelPlugin.ts';
import { createEmailSender } from './createEmailSender.ts';
import { listenerCredentials, openEmailListener } from './openEmailListener.ts';

/**
 * Email: mail is received by an SMTP listener the ChannelManager holds (the organisation's MX
 * or relay pushes it there: no mailbox to poll, no polling lag) and answered through the
 * account's outbound relay with nodemailer. SMTP cannot tell a repeated submission from a new
 * message, so the send `dedupes: false`: a row whose sender died mid-call is `uncertain`,
 * never sent again. Plain text, one message per answer; no buttons (so no approvals), no
 * typing indicator, and no status note (a "working on it" email is noise in an inbox).
 */
export const emailPlugin: ChannelPlugin<'email'> = {
  type: 'email',
  displayName: 'Email',
  capabilities: {
    threads: true,
    edits: false,
    typing: false,
    statusNote: false,
    buttons: false,
    maxMessageChars: CHANNEL_TEXT_LIMITS.email,
    batchSize: 1,
  },
  dialect: () => 'plain',
  delivery: () => 'send',
  format: (text, _account, limit) => formatForChannel(text, 'plain', limit),
  credentials: (account) => (account.relay.auth ? [account.relay.auth.password] : []),
  createSender(account, [password]) {
    const email = createEmailSender(account, password);
    return {
      methodFor: () => ({ name: 'smtp', dedupes: false }),
      async send(rows, _method, { event }) {
        const row = rows[0]!;
        const sent = await email.send({
          rowId: row.messageId,
          text: row.text,
          part: { index: row.chunkIndex, count: row.chunkCount },
          to: event.sender.id,
          subject: event.message.subject,
          inReplyTo: event.externalEventId,
          threadRoot: event.conversation.threadId,
        });
        return { method: 'smtp', externalMessageId: sent.messageId };
      },
    };
  },
  connection: {
    credentials: listenerCredentials,
    open: (account, credentials, sink) => openEmailListener(account, credentials, sink),
  },
};
