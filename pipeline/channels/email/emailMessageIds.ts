import { createHash } from 'node:crypto';

/** The longest id an event or a conversation thread holds (`ConversationEvent`'s limit). */
const MAX_ID = 200;

/**
 * A Message-ID as AwoooP keys on it: without its angle brackets and surrounding space, and,
 * past 200 characters (RFC 5322 allows 998), replaced by `sha256:<hex>` of it so it still
 * fits the event. Null for an empty one.
 */
export function messageIdKey(raw: string | undefined): string | null {
  const id = raw?.trim().replace(/^<+/, '').replace(/>+$/, '').trim();
  if (!id) return null;
  return id.length <= MAX_ID ? id : `sha256:${createHash('sha256').update(id).digest('hex')}`;
}

/** The ids a `References` header lists, oldest first (mailparser gives one or an array). */
export function referenceKeys(references: string | string[] | undefined): string[] {
  const list =
    references === undefined ? [] : Array.isArray(references) ? references : [references];
  return list
    .flatMap((r) => r.split(/\s+/))
    .map((r) => messageIdKey(r))
    .filter((r): r is string => r !== null);
}

/** Whether a key is a full Message-ID (one a header may name again), not a digest of one. */
export function isHeaderId(key: string): boolean {
  return !key.startsWith('sha256:') && !key.startsWith('digest:');
}

/**
 * The stable id of a message that has no Message-ID: SHA-256 over its From, To, Cc, Date and
 * Subject header lines as sent, and its text. A relay's retry carries the same headers and
 * body, so it finds the same id; the relay's own trace headers (`Received`) are left out.
 */
export function headerDigest(
  headerLines: readonly { key: string; line: string }[],
  text: string,
): string {
  const hash = createHash('sha256');
  for (const name of ['from', 'to', 'cc', 'date', 'subject']) {
    for (const h of headerLines) if (h.key === name) hash.update(`${h.line}\n`);
  }
  hash.update('\n').update(text);
  return `digest:${hash.digest('hex')}`;
}
