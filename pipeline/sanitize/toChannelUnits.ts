import { splitCodeSegments, type CodeSegment } from './splitCodeSegments.ts';

/** How a channel marks up text: Telegram's two parse modes, Slack's mrkdwn, Discord's markdown, or none. */
export type ChannelFormat = 'plain' | 'HTML' | 'MarkdownV2' | 'mrkdwn' | 'discord';

/** A code block or inline code span: the markup that opens and closes it in the output. */
export interface Wrapper {
  readonly open: string;
  readonly close: string;
  /** What the markup adds to the length the channel counts (see {@link Unit.size}). */
  readonly size: number;
}

/**
 * The smallest piece of output: one source code point (a surrogate pair stays whole) in its
 * escaped form, so no chunk boundary can fall inside an escape sequence or an HTML entity.
 */
export interface Unit {
  readonly src: string;
  readonly out: string;
  /**
   * What the unit adds to the length the channel counts, in UTF-16 code units. Telegram
   * counts its 4096 after entity parsing, so an `&amp;` or a `\.` weighs what it shows (1);
   * plain text weighs its own length.
   */
  readonly size: number;
  /** The code block or span the unit sits in; null for ordinary text. */
  readonly wrapper: Wrapper | null;
  /** Continues the character before it (a combining mark, a ZWJ emoji): no cut before it. */
  readonly joined: boolean;
}

const GRAPHEMES = new Intl.Segmenter('und', { granularity: 'grapheme' });

/** The code points of `text`, each with whether it continues the grapheme before it. */
function* codePoints(text: string): Generator<{ ch: string; joined: boolean }> {
  for (const { segment } of GRAPHEMES.segment(text)) {
    let joined = false;
    for (const ch of segment) {
      yield { ch, joined };
      joined = true;
    }
  }
}

const MARKDOWN_V2_SPECIAL = new Set('_*[]()~`>#+-=|{}.!\\');
/**
 * What Discord's markdown reads as markup outside code: emphasis, strike, spoilers, quotes,
 * headings and lists, masked links, and `<@…>` / `<#…>` / `<t:…>` mentions and `@everyone`.
 * Discord takes a backslash before any punctuation as "this character as is".
 */
const DISCORD_SPECIAL = new Set('\\*_~`|><#-[]@');
/** A backtick inside Discord code would close it (Discord has no escape there): shown as ˋ. */
const DISCORD_CODE_BACKTICK = '\u02cb';

function escapeHtml(ch: string): string {
  return ch === '&' ? '&amp;' : ch === '<' ? '&lt;' : ch === '>' ? '&gt;' : ch;
}

function escapeText(ch: string, format: ChannelFormat): string {
  if (format === 'HTML' || format === 'mrkdwn') return escapeHtml(ch);
  if (format === 'MarkdownV2') return MARKDOWN_V2_SPECIAL.has(ch) ? `\\${ch}` : ch;
  if (format === 'discord') return DISCORD_SPECIAL.has(ch) ? `\\${ch}` : ch;
  return ch;
}

function escapeCode(ch: string, format: ChannelFormat): string {
  // Slack reads `&`, `<` and `>` as control characters inside code too.
  if (format === 'HTML' || format === 'mrkdwn') return escapeHtml(ch);
  if (format === 'MarkdownV2') return ch === '`' || ch === '\\' ? `\\${ch}` : ch;
  if (format === 'discord') return ch === '`' ? DISCORD_CODE_BACKTICK : ch;
  return ch;
}

function wrapperFor(
  segment: Exclude<CodeSegment, { kind: 'text' }>,
  format: ChannelFormat,
): Wrapper {
  if (format === 'mrkdwn') {
    // Slack has no language tag on a fence, and counts the markup as text.
    return segment.kind === 'pre'
      ? { open: '```\n', close: '\n```', size: 8 }
      : { open: '`', close: '`', size: 2 };
  }
  if (format === 'discord') {
    // Discord counts the markup as text, and shows a fence's language as its highlighting.
    if (segment.kind === 'code') return { open: '`', close: '`', size: 2 };
    const open = `\`\`\`${segment.lang}\n`;
    return { open, close: '\n```', size: open.length + 4 };
  }
  if (segment.kind === 'pre') {
    if (format === 'HTML') {
      const open = segment.lang ? `<pre><code class="language-${segment.lang}">` : '<pre><code>';
      return { open, close: '</code></pre>', size: 0 };
    }
    // Telegram may keep the newline before the closing fence as text: count it.
    return { open: `\`\`\`${segment.lang}\n`, close: '\n```', size: 1 };
  }
  return format === 'HTML'
    ? { open: '<code>', close: '</code>', size: 0 }
    : { open: '`', close: '`', size: 0 };
}

/**
 * What a unit weighs: Telegram counts text after parsing entities (the character itself);
 * Slack's and Discord's limits are on the text as sent, so an `&amp;` weighs its five
 * characters on Slack and a `\*` its two on Discord.
 */
function sizeOf(ch: string, out: string, format: ChannelFormat): number {
  return format === 'mrkdwn' || format === 'discord' ? out.length : ch.length;
}

/**
 * Text as the units a channel's messages are cut from: each code point escaped for `format`
 * and, in a code block or inline code span, tagged with the markup that wraps it (`plain` has
 * no code: all of it is text). A block whose markup cannot fit `limit` around one character
 * goes out as text; an empty one is dropped. The escaping and markup per format are listed
 * on `formatForChannel`, which cuts these units into messages.
 */
export function toChannelUnits(text: string, format: ChannelFormat, limit: number | null): Unit[] {
  const segments: CodeSegment[] =
    format === 'plain' ? [{ kind: 'text', text }] : splitCodeSegments(text);
  return unitsOf(segments, format, limit);
}

function unitsOf(
  segments: readonly CodeSegment[],
  format: ChannelFormat,
  limit: number | null,
): Unit[] {
  const units: Unit[] = [];
  const asText = (text: string) => {
    for (const { ch, joined } of codePoints(text)) {
      const out = escapeText(ch, format);
      units.push({ src: ch, out, size: sizeOf(ch, out, format), wrapper: null, joined });
    }
  };
  for (const segment of segments) {
    if (segment.kind === 'text') {
      asText(segment.text);
      continue;
    }
    if (segment.body === '') continue;
    const wrapper = wrapperFor(segment, format);
    const code = [...codePoints(segment.body)].map(({ ch, joined }) => {
      const out = escapeCode(ch, format);
      return { src: ch, out, size: sizeOf(ch, out, format), wrapper, joined };
    });
    const widest = code.reduce((max, u) => Math.max(max, u.size), 0);
    // A limit too small for the markup around one character: the code goes out as text.
    if (limit !== null && wrapper.size + widest > limit) {
      asText(segment.body);
    } else {
      units.push(...code);
    }
  }
  return units;
}
