import type { Attachment } from '../contracts/conversationEvent.ts';

/** The most attachments listed one by one; the rest are counted. */
const MAX_LISTED = 20;
/** The most characters of a name shown (the rest is cut, marked `…`). */
const MAX_NAME_CHARS = 80;
/** A MIME type shown as is; anything else is quoted like a name. */
const PLAIN_MIME = /^[a-z0-9][a-z0-9!#$&^_.+-]{0,63}\/[a-z0-9][a-z0-9!#$&^_.+-]{0,63}$/i;

const OMITTED = {
  too_large: 'not kept: over the size limit',
  too_many: 'not kept: past the limit of attachments a message',
} as const satisfies Record<NonNullable<Attachment['omitted']>, string>;

/**
 * The text of a user's turn as the model reads it: the message text, and when something was
 * attached, a short plain list of what (kind, name, type, size, why one was not kept), so the
 * model knows. Without attachments the text is returned unchanged. What the sender chose (a
 * file name, a MIME type) appears only as a quoted, escaped, length-capped JSON string, so it
 * cannot end the list or read as anything but data; the channel's reference is never shown.
 */
export function withAttachmentNote(text: string, attachments: readonly Attachment[]): string {
  if (attachments.length === 0) return text;
  const lines = attachments.slice(0, MAX_LISTED).map((a, i) => `${i + 1}. ${describe(a)}`);
  if (attachments.length > MAX_LISTED)
    lines.push(`… and ${attachments.length - MAX_LISTED} more, not listed`);
  const count = attachments.length === 1 ? '1 attachment' : `${attachments.length} attachments`;
  const note = [
    `[The user sent ${count}. Only a reference is kept; the contents are not available here. Names and types are as the sender gave them, quoted.]`,
    ...lines,
  ].join('\n');
  return text === '' ? note : `${text}\n\n${note}`;
}

function describe(attachment: Attachment): string {
  const parts: string[] = [attachment.kind];
  if (attachment.name !== undefined) parts.push(`name ${quote(attachment.name)}`);
  if (attachment.mimeType !== undefined)
    parts.push(
      `type ${PLAIN_MIME.test(attachment.mimeType) ? attachment.mimeType : quote(attachment.mimeType)}`,
    );
  if (attachment.sizeBytes !== undefined) parts.push(formatBytes(attachment.sizeBytes));
  if (attachment.omitted !== undefined) parts.push(OMITTED[attachment.omitted]);
  return parts.join(', ');
}

/** A JSON string of at most {@link MAX_NAME_CHARS} characters, invisible characters escaped. */
function quote(value: string): string {
  const chars = Array.from(value);
  const cut = chars.length > MAX_NAME_CHARS ? `${chars.slice(0, MAX_NAME_CHARS).join('')}…` : value;
  // JSON escapes quotes, backslashes and C0 controls; format characters (bidi overrides,
  // zero-width), DEL, C1 controls and line separators are escaped here too.
  return JSON.stringify(cut).replace(
    /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/gu,
    (c) => `\\u${c.codePointAt(0)!.toString(16).padStart(4, '0')}`,
  );
}

function formatBytes(bytes: number): string {
  if (bytes < 1000) return `${bytes} bytes`;
  const units = ['kB', 'MB', 'GB'];
  let value = bytes / 1000;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return `${value < 10 ? value.toFixed(1) : Math.round(value)} ${units[unit]}`;
}
