import { createTransport } from 'nodemailer';
import type Mail from 'nodemailer/lib/mailer';

/** A message as nodemailer (the real client) composes it: every MIME detail is its own. */
export type EmailFixture = Mail.Options;

/** A short question in one text/plain part. */
export function plainQuestion({
  messageId,
  from = 'Alice Example <alice@customer.test>',
  to = 'agent@acme.test',
  subject = 'Disk usage on db-1',
  text = 'Hi, how full is the disk on db-1 right now?',
}: {
  messageId: string;
  from?: string;
  to?: string;
  subject?: string;
  text?: string;
}): EmailFixture {
  return { messageId, from, to, subject, text, date: new Date('2026-12-01T09:00:00Z') };
}

/**
 * What a webmail client sends: multipart/mixed around multipart/alternative (text and HTML
 * versions of the same words), a PDF attachment and an image, non-ASCII display name and
 * subject (RFC 2047 encoded words on the wire).
 */
export function richMessage({ messageId }: { messageId: string }): EmailFixture {
  return {
    messageId,
    from: '"Zoë Ångström" <zoe@partner.test>',
    to: 'Support <help@acme.test>',
    cc: 'bob@partner.test',
    subject: 'Über die Rechnung — 請求書 #4411',
    date: new Date('2026-12-01T10:15:00Z'),
    text: 'Hallo,\n\nthe invoice 4411 looks wrong: the total is 1.204,00 EUR but the order was 1.024,00 EUR.\n\nZoë',
    html: '<div dir="ltr"><p>Hallo,</p><p>the invoice <b>4411</b> looks wrong: the total is 1.204,00&nbsp;EUR but the order was 1.024,00&nbsp;EUR.</p><p>Zoë</p></div>',
    attachments: [
      {
        filename: 'Rechnung-4411.pdf',
        content: Buffer.concat([Buffer.from('%PDF-1.7\n'), Buffer.alloc(6000, 0x20)]),
        contentType: 'application/pdf',
      },
      {
        filename: 'screenshot.png',
        content: Buffer.from(
          'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==',
          'base64',
        ),
        cid: 'shot-1@partner.test',
      },
    ],
  };
}

/**
 * A reply as mail clients write it: `Re:` subject, In-Reply-To the message answered,
 * References the thread so far, and the answered message quoted under an attribution line.
 */
export function replyTo({
  messageId,
  parent,
  references,
  quoted,
  text,
  from = 'Alice Example <alice@customer.test>',
  subject = 'Re: Disk usage on db-1',
}: {
  messageId: string;
  /** The Message-ID answered, with angle brackets. */
  parent: string;
  /** The thread's ids before `parent`, with angle brackets. */
  references: string[];
  quoted: string;
  text: string;
  from?: string;
  subject?: string;
}): EmailFixture {
  const quote = quoted
    .split('\n')
    .map((l) => `> ${l}`)
    .join('\n');
  return {
    messageId,
    from,
    to: 'agent@acme.test',
    subject,
    date: new Date('2026-12-01T09:05:00Z'),
    inReplyTo: parent,
    references: [...references, parent],
    text: `${text}\n\nOn Tue, 1 Dec 2026 at 09:01, agent@acme.test <agent@acme.test>\nwrote:\n${quote}\n`,
  };
}

/** How one delivery into a listener ended: the listener's SMTP reply. */
export type Delivery = { code: number; response: string };

/**
 * Delivers `mail` to an SMTP listener as a relay would, with nodemailer's SMTP client (a
 * fresh connection each time): AUTH when `auth` is given, the envelope from the message or
 * `envelope`. Resolves with the final reply, 250 or the refusal's code.
 */
export async function deliverEmail(
  to: { host: string; port: number },
  mail: EmailFixture,
  {
    auth,
    envelope,
  }: {
    auth?: { user: string; pass: string };
    envelope?: { from: string; to: string[] };
  } = {},
): Promise<Delivery> {
  const transport = createTransport({
    host: to.host,
    port: to.port,
    secure: false,
    ignoreTLS: true,
    ...(auth ? { auth } : {}),
    connectionTimeout: 30_000,
    greetingTimeout: 30_000,
    socketTimeout: 60_000,
  });
  try {
    const info = await transport.sendMail({ ...mail, ...(envelope ? { envelope } : {}) });
    return { code: Number(/^\d{3}/.exec(info.response)?.[0] ?? 0), response: info.response };
  } catch (error) {
    const e = error as { responseCode?: number; response?: string; message: string };
    return { code: e.responseCode ?? 0, response: e.response ?? e.message };
  } finally {
    transport.close();
  }
}
