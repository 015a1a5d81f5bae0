import { createTransport } from 'nodemailer';
import { AppError, NonRetryableError, RetryAfterError } from '../../errors.ts';
import type { AccountOf } from '../ChannelPlugin.ts';
import { isHeaderId } from './emailMessageIds.ts';

/** One answer as it goes out: its text, the row it is, and the message it answers. */
export type OutgoingEmail = {
  /** The ledger row's id: our Message-ID is made of it, so a resend carries the same one. */
  rowId: string;
  text: string;
  /** `(2/3)` on the subject when the answer was split (only a lowered `maxChunkChars` does). */
  part?: { index: number; count: number } | undefined;
  to: string;
  subject: string | undefined;
  /** The inbound message's key and its thread's root (see `readInboundEmail`). */
  inReplyTo: string;
  threadRoot: string | undefined;
};

/** Sends as one email account through its relay. */
export type EmailSender = {
  /** Submits one message; resolves with its Message-ID (angle brackets included). */
  send(mail: OutgoingEmail): Promise<{ messageId: string }>;
};

/** The error codes nodemailer gives when no connection to the relay was made at all. */
const NOT_CONNECTED = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
]);

/**
 * A nodemailer SMTP transport to the account's relay (`relay.host:port`, TLS from the first
 * byte with `secure`, else STARTTLS where offered; SMTP AUTH with the resolved password). Each
 * answer is one message From the account's address To the sender, `Re:` its subject, with
 * `In-Reply-To` the inbound Message-ID and `References` the thread's root and that id, so
 * mail clients thread it, and `Auto-Submitted: auto-replied` (RFC 3834) so other
 * responders leave it alone. Its Message-ID is `<row id@account domain>`. Failures map by
 * the relay's reply: 4xx → not sent, try again (a `RetryAfterError` when the reply says how
 * long, else `CHANNEL_UNAVAILABLE`); 5xx → `CHANNEL_REJECTED`; no reply at all after the
 * connection was made (a timeout, a dropped connection: the message may have been taken) →
 * `CHANNEL_UNCERTAIN`, never repeated.
 */
export function createEmailSender(
  account: AccountOf<'email'>,
  password: string | undefined,
  { timeoutMs = 20_000 }: { timeoutMs?: number } = {},
): EmailSender {
  const { relay } = account;
  const domain = account.address.split('@')[1] ?? 'localhost';
  const transport = createTransport({
    host: relay.host,
    port: relay.port,
    secure: relay.secure,
    ...(relay.auth ? { auth: { user: relay.auth.username, pass: password ?? '' } } : {}),
    name: domain,
    connectionTimeout: timeoutMs,
    greetingTimeout: timeoutMs,
    socketTimeout: timeoutMs,
    disableFileAccess: true,
    disableUrlAccess: true,
  });
  return {
    async send(mail) {
      const messageId = `<${mail.rowId}@${domain}>`;
      const parent = isHeaderId(mail.inReplyTo) ? `<${mail.inReplyTo}>` : null;
      const root =
        mail.threadRoot && mail.threadRoot !== mail.inReplyTo && isHeaderId(mail.threadRoot)
          ? `<${mail.threadRoot}>`
          : null;
      const base = mail.subject ?? '';
      const subject = /^re:/i.test(base) ? base : `Re: ${base || '(no subject)'}`;
      const part =
        mail.part && mail.part.count > 1 ? ` (${mail.part.index + 1}/${mail.part.count})` : '';
      try {
        await transport.sendMail({
          from: account.address,
          to: mail.to,
          subject: `${subject}${part}`,
          text: mail.text,
          messageId,
          ...(parent ? { inReplyTo: parent } : {}),
          ...(parent ? { references: [root, parent].filter((r): r is string => r !== null) } : {}),
          headers: { 'Auto-Submitted': 'auto-replied' },
        });
      } catch (error) {
        throw mapSmtpError(error, password);
      }
      return { messageId };
    },
  };
}

/** Seconds a relay's reply text says to wait (`try again in 300 seconds`, `retry in 5 min`). */
export function retryHintMs(reply: string): number | null {
  const m =
    /(?:try\s+(?:again\s+)?(?:later\s+)?in|retry\s+in|wait)\s+(\d{1,5})\s*(s|sec|secs|seconds?|m|mins?|minutes?)\b/i.exec(
      reply,
    );
  if (!m) return null;
  const n = Number(m[1]);
  return (m[2]!.toLowerCase().startsWith('m') ? n * 60 : n) * 1000;
}

/** Turns what nodemailer threw into an AppError that never holds the password. */
function mapSmtpError(error: unknown, password: string | undefined): AppError {
  const e = error as {
    responseCode?: unknown;
    code?: unknown;
    originalCode?: unknown;
    response?: unknown;
    message?: unknown;
  };
  const redact = (text: string) => (password ? text.split(password).join('[REDACTED]') : text);
  const reply = redact(typeof e.response === 'string' ? e.response : String(e.message ?? error));
  const responseCode = typeof e.responseCode === 'number' ? e.responseCode : null;
  const detail = { responseCode, code: typeof e.code === 'string' ? e.code : null };
  if (responseCode !== null && responseCode >= 400 && responseCode < 500) {
    const waitMs = retryHintMs(reply);
    const message = `the relay said not now: ${reply}`.slice(0, 500);
    return waitMs === null
      ? new AppError('CHANNEL_UNAVAILABLE', message, { status: 503, detail })
      : new RetryAfterError('CHANNEL_UNAVAILABLE', message, waitMs, {
          detail,
          spendsAttempt: true,
        });
  }
  if (responseCode !== null && responseCode >= 500) {
    return new NonRetryableError(
      'CHANNEL_REJECTED',
      `the relay refused the message: ${reply}`.slice(0, 500),
      {
        status: 502,
        detail,
      },
    );
  }
  const original = [e.originalCode, e.code].find(
    (c): c is string => typeof c === 'string' && NOT_CONNECTED.has(c),
  );
  if (original !== undefined) {
    return new AppError('CHANNEL_UNAVAILABLE', `the relay could not be reached (${original})`, {
      status: 503,
      detail,
    });
  }
  // Connected, but no reply to the end of the message: the relay may have taken it.
  return new AppError('CHANNEL_UNCERTAIN', `the relay did not answer: ${reply}`.slice(0, 500), {
    status: 503,
    detail,
  });
}
