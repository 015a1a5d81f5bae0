import { simpleParser, type ParsedMail } from 'mailparser';
import type { Attachment } from '../../contracts/conversationEvent.ts';
import type { AccountOf } from '../ChannelPlugin.ts';
import { capAttachments } from '../capAttachments.ts';
import type { NormalizedInbound } from '../inboundTypes.ts';
import { headerDigest, messageIdKey, referenceKeys } from './emailMessageIds.ts';
import { stripQuotedReply } from './stripQuotedReply.ts';

/** The most text an event holds (`ConversationEvent.message.text`). */
const MAX_TEXT = 100_000;

/** What one delivered message is to the account. */
export type InboundEmail =
  | { kind: 'message'; event: NormalizedInbound }
  /** Taken (250) and not answered: an automatic message, or the account's own mail. */
  | { kind: 'ignored'; reason: string }
  /** Refused with an SMTP reply; nothing is written. */
  | { kind: 'refused'; responseCode: number; message: string };

/**
 * Reads one delivered message (its raw bytes, parsed with mailparser) for the account: who
 * sent it (the From header's address, checked against `allowSenders`: that is who the answer
 * goes to), its dedupe key (the Message-ID, or a digest of its headers and text without one),
 * its thread (the first id in References, else In-Reply-To, else its own id: the thread's
 * root, which every reply in the thread names first), its plain text without quoted history,
 * and its attachments as references (Content-ID, else the MIME part number) under the
 * account's media caps, their contents not kept. Automatic mail (`Auto-Submitted`, a bulk
 * `Precedence`, a bounce's empty MAIL FROM) and mail from the account's own addresses are
 * ignored, so two auto-responders never answer each other.
 */
export async function readInboundEmail(
  raw: Buffer,
  envelope: { mailFrom: string },
  account: AccountOf<'email'>,
): Promise<InboundEmail> {
  let mail: ParsedMail;
  try {
    mail = await simpleParser(raw, { skipTextToHtml: true, keepCidLinks: true });
  } catch (error) {
    // Permanent: the same bytes fail the same way on every redelivery.
    const reason = error instanceof Error ? error.message : String(error);
    return {
      kind: 'refused',
      responseCode: 554,
      message: `5.6.0 unreadable message: ${reason}`.slice(0, 300),
    };
  }
  const from = mail.from?.value.find((a) => a.address)?.address?.toLowerCase();
  if (!from)
    return { kind: 'refused', responseCode: 550, message: '5.1.7 the message has no From address' };
  const own = [account.address, ...account.aliases].map((a) => a.toLowerCase());
  if (own.includes(from)) return { kind: 'ignored', reason: 'from the account itself' };
  if (!senderAllowed(from, account.allowSenders)) {
    return {
      kind: 'refused',
      responseCode: 550,
      message: `5.7.1 ${from} may not write to this address`,
    };
  }
  const automatic = automaticReason(mail, envelope.mailFrom);
  if (automatic) return { kind: 'ignored', reason: automatic };

  const body = stripQuotedReply(mail.text ?? '');
  const subject = mail.subject?.trim() ?? '';
  // A question asked in the subject line alone is still a question.
  const text = body === '' ? subject : body;
  if (text.length > MAX_TEXT) {
    return {
      kind: 'refused',
      responseCode: 552,
      message: `5.3.4 the text is longer than ${MAX_TEXT} characters`,
    };
  }
  const id = messageIdKey(mail.messageId) ?? headerDigest(mail.headerLines, mail.text ?? '');
  const inReplyTo = messageIdKey(mail.inReplyTo);
  const root = referenceKeys(mail.references)[0] ?? inReplyTo ?? id;
  const name = mail.from?.value.find((a) => a.address)?.name.trim();
  return {
    kind: 'message',
    event: {
      externalEventId: id,
      sender: { id: from, ...(name ? { displayName: name.slice(0, 200) } : {}), isBot: false },
      conversation: { kind: 'dm', id: from, threadId: root },
      message: {
        text,
        ...(subject === '' ? {} : { subject: subject.slice(0, 998) }),
        ...(inReplyTo === null ? {} : { replyToExternalId: inReplyTo }),
        attachments: capAttachments(mail.attachments.map(toAttachment), account.media),
      },
    },
  };
}

/** Whether `from` (lower-cased) is an allowed address or in an allowed `@domain`. */
export function senderAllowed(from: string, allowed: readonly string[]): boolean {
  return allowed.some((entry) => {
    const e = entry.toLowerCase();
    return e.startsWith('@') ? from.endsWith(e) : from === e;
  });
}

/** Why a message was sent by a machine (RFC 3834), or null for a person's mail. */
function automaticReason(mail: ParsedMail, mailFrom: string): string | null {
  if (mailFrom === '') return 'a bounce (empty MAIL FROM)';
  const auto = header(mail, 'auto-submitted');
  if (auto && auto.toLowerCase() !== 'no') return `Auto-Submitted: ${auto}`;
  const precedence = header(mail, 'precedence')?.toLowerCase();
  if (precedence && ['bulk', 'junk', 'list', 'auto_reply'].includes(precedence))
    return `Precedence: ${precedence}`;
  return null;
}

function header(mail: ParsedMail, name: string): string | undefined {
  const value = mail.headers.get(name);
  return typeof value === 'string' ? value.trim() : undefined;
}

function toAttachment(part: ParsedMail['attachments'][number], index: number): Attachment {
  const type = part.contentType.toLowerCase();
  const kind = type.startsWith('image/')
    ? 'image'
    : type.startsWith('video/')
      ? 'video'
      : type.startsWith('audio/')
        ? 'audio'
        : 'file';
  const ref = part.cid ? `cid:${part.cid}` : `part:${part.partId ?? String(index + 1)}`;
  return {
    kind,
    ref: ref.slice(0, 2000),
    mimeType: type.slice(0, 200),
    sizeBytes: part.size,
    ...(part.filename ? { name: part.filename.slice(0, 300) } : {}),
  };
}
