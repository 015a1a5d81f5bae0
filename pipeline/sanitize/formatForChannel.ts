import { NonRetryableError } from '../errors.ts';

/** How a channel marks up text: Telegram's two parse modes, or none. */
export type ChannelFormat = 'plain' | 'HTML' | 'MarkdownV2';

/** A code block or inline code span: the markup that opens and closes it in the output. */
interface Wrapper {
  readonly open: string;
  readonly close: string;
  /** What the markup adds to the length the channel counts (see {@link Unit.size}). */
  readonly size: number;
}

/**
 * The smallest piece of output: one source code point (a surrogate pair stays whole) in its
 * escaped form, so no chunk boundary can fall inside an escape sequence or an HTML entity.
 */
interface Unit {
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

type Segment =
  | { readonly kind: 'text'; readonly text: string }
  | { readonly kind: 'pre'; readonly lang: string; readonly body: string }
  | { readonly kind: 'code'; readonly body: string };

const FENCE_OPEN = /^( {0,3})(`{3,})([^`]*)$/;
const LANG = /^[A-Za-z0-9_+#-]{1,32}/;
const MARKDOWN_V2_SPECIAL = new Set('_*[]()~`>#+-=|{}.!\\');

const PARAGRAPH = 0;
const LINE = 1;
const SENTENCE = 2;
const SPACE = 3;

/**
 * A chunk ends at a break only if it is at least this share of the limit; before that, a
 * break would leave a heading or a word alone in a message, so the cut goes at the limit.
 */
const MIN_SHARE = 0.5;
/** Ends a sentence when whitespace follows. */
const SENTENCE_END = new Set('.!?…');
/** Closes a quotation or bracket a sentence may end inside. */
const CLOSERS = new Set(`"')]}»”’」』）】〕〉》`);
/** Ends a CJK sentence, with or without whitespace after. */
const CJK_SENTENCE_END = new Set('。！？．');
/** A CJK comma: a break as good as a space in text that has none. */
const CJK_PAUSE = new Set('、，；：');

/** A place a chunk may end: the chunk stops before `cut`, the next one starts at `next`. */
interface Break {
  readonly rank: number;
  readonly next: number;
}

function escapeHtml(ch: string): string {
  return ch === '&' ? '&amp;' : ch === '<' ? '&lt;' : ch === '>' ? '&gt;' : ch;
}

function escapeText(ch: string, format: ChannelFormat): string {
  if (format === 'HTML') return escapeHtml(ch);
  if (format === 'MarkdownV2') return MARKDOWN_V2_SPECIAL.has(ch) ? `\\${ch}` : ch;
  return ch;
}

function escapeCode(ch: string, format: ChannelFormat): string {
  if (format === 'HTML') return escapeHtml(ch);
  if (format === 'MarkdownV2') return ch === '`' || ch === '\\' ? `\\${ch}` : ch;
  return ch;
}

function wrapperFor(segment: Segment, format: ChannelFormat): Wrapper {
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

/** Splits fenced code blocks (```lang … ```, closed by a fence at least as long) out of text. */
function splitFences(text: string): Segment[] {
  const segments: Segment[] = [];
  let textStart = 0;
  let pos = 0;
  while (pos <= text.length) {
    const nl = text.indexOf('\n', pos);
    const lineEnd = nl === -1 ? text.length : nl;
    const open = FENCE_OPEN.exec(text.slice(pos, lineEnd));
    if (open === null) {
      if (nl === -1) break;
      pos = nl + 1;
      continue;
    }
    const indent = open[1]?.length ?? 0;
    const fence = open[2]?.length ?? 3;
    const lang = LANG.exec((open[3] ?? '').trim().split(/\s+/)[0] ?? '')?.[0] ?? '';
    const body: string[] = [];
    let closedAt = -1;
    let p = nl === -1 ? text.length + 1 : nl + 1;
    while (p <= text.length) {
      const n2 = text.indexOf('\n', p);
      const end2 = n2 === -1 ? text.length : n2;
      const line = text.slice(p, end2);
      const close = /^ {0,3}(`+)[ \t]*$/.exec(line);
      if (close !== null && (close[1]?.length ?? 0) >= fence) {
        closedAt = end2;
        break;
      }
      // Content is indented as far as its fence was; that indentation is not code.
      body.push(line.replace(new RegExp(`^ {0,${indent}}`), ''));
      if (n2 === -1) break;
      p = n2 + 1;
    }
    if (closedAt === -1) {
      while (body.length > 0 && body.at(-1)?.trim() === '') body.pop();
    }
    segments.push({ kind: 'text', text: text.slice(textStart, pos) });
    segments.push({ kind: 'pre', lang, body: body.join('\n') });
    if (closedAt === -1) {
      textStart = text.length;
      break;
    }
    // The newline after the closing fence stays with the text that follows.
    textStart = closedAt;
    pos = closedAt + 1;
  }
  segments.push({ kind: 'text', text: text.slice(textStart) });
  return segments;
}

function runLength(text: string, at: number): number {
  let n = 0;
  while (text[at + n] === '`') n += 1;
  return n;
}

/**
 * Splits inline code spans out of text: a run of backticks closed by a run of the same
 * length on the same line. An unclosed backtick stays literal text.
 */
function splitInline(text: string): Segment[] {
  const segments: Segment[] = [];
  let last = 0;
  let i = 0;
  while (i < text.length) {
    if (text[i] !== '`') {
      i += 1;
      continue;
    }
    const n = runLength(text, i);
    let j = i + n;
    let found = -1;
    while (j < text.length && text[j] !== '\n') {
      if (text[j] === '`') {
        const m = runLength(text, j);
        if (m === n) {
          found = j;
          break;
        }
        j += m;
      } else {
        j += 1;
      }
    }
    let body = found === -1 ? '' : text.slice(i + n, found);
    if (found === -1 || body.trim() === '') {
      i = found === -1 ? i + n : found + n;
      continue;
    }
    if (body.length >= 2 && body.startsWith(' ') && body.endsWith(' ')) body = body.slice(1, -1);
    segments.push({ kind: 'text', text: text.slice(last, i) }, { kind: 'code', body });
    i = found + n;
    last = i;
  }
  segments.push({ kind: 'text', text: text.slice(last) });
  return segments;
}

function parse(text: string, format: ChannelFormat): Segment[] {
  if (format === 'plain') return [{ kind: 'text', text }];
  return splitFences(text).flatMap((s) => (s.kind === 'text' ? splitInline(s.text) : [s]));
}

function toUnits(
  segments: readonly Segment[],
  format: ChannelFormat,
  limit: number | null,
): Unit[] {
  const units: Unit[] = [];
  const asText = (text: string) => {
    for (const { ch, joined } of codePoints(text)) {
      units.push({ src: ch, out: escapeText(ch, format), size: ch.length, wrapper: null, joined });
    }
  };
  for (const segment of segments) {
    if (segment.kind === 'text') {
      asText(segment.text);
      continue;
    }
    if (segment.body === '') continue;
    const wrapper = wrapperFor(segment, format);
    const code = [...codePoints(segment.body)].map(({ ch, joined }) => ({
      src: ch,
      out: escapeCode(ch, format),
      size: ch.length,
      wrapper,
      joined,
    }));
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

function isTextSpace(unit: Unit | undefined): boolean {
  return unit !== undefined && unit.wrapper === null && /^\s$/u.test(unit.src);
}

/** SENTENCE for whitespace at `k` that follows a sentence's end (`end.`, `end."`), else SPACE. */
function spaceRank(units: readonly Unit[], k: number): number {
  let p = k - 1;
  while (p > 0 && units[p]?.wrapper === null && CLOSERS.has(units[p]?.src ?? '')) p -= 1;
  const last = units[p];
  return last !== undefined && last.wrapper === null && SENTENCE_END.has(last.src)
    ? SENTENCE
    : SPACE;
}

/** The best place to end a chunk just before each unit index (index `units.length` included). */
function findBreaks(units: readonly Unit[]): (Break | undefined)[] {
  const breaks: (Break | undefined)[] = new Array<Break | undefined>(units.length + 1);
  const offer = (cut: number, rank: number, next: number) => {
    const known = breaks[cut];
    if (known === undefined || rank < known.rank) breaks[cut] = { rank, next };
  };
  for (let k = 0; k < units.length; k += 1) {
    const unit = units[k];
    if (unit === undefined) continue;
    if (isTextSpace(unit) && !isTextSpace(units[k - 1])) {
      let end = k;
      let newlines = 0;
      while (isTextSpace(units[end])) {
        if (units[end]?.src === '\n') newlines += 1;
        end += 1;
      }
      offer(k, newlines >= 2 ? PARAGRAPH : newlines === 1 ? LINE : spaceRank(units, k), end);
    } else if (unit.wrapper !== null && unit.src === '\n') {
      const after = units[k + 1];
      const blank = after?.wrapper === unit.wrapper && after.src === '\n';
      offer(k, blank ? PARAGRAPH : LINE, blank ? k + 2 : k + 1);
    } else if (unit.wrapper !== null && (unit.src === ' ' || unit.src === '\t')) {
      // Spaces inside code are kept: the cut goes after the space.
      offer(k + 1, SPACE, k + 1);
    } else if (unit.wrapper === null && CJK_SENTENCE_END.has(unit.src)) {
      let end = k + 1;
      while (units[end]?.wrapper === null && CLOSERS.has(units[end]?.src ?? '')) end += 1;
      offer(end, SENTENCE, end);
    } else if (unit.wrapper === null && CJK_PAUSE.has(unit.src)) {
      offer(k + 1, SPACE, k + 1);
    }
    // Where code meets text is as good a place as a space, and better than inside a word.
    if (k > 0 && units[k - 1]?.wrapper !== unit.wrapper) offer(k, SPACE, k);
  }
  return breaks;
}

/** Renders units [start, end) with every code block opened and closed inside the chunk. */
function render(units: readonly Unit[], start: number, end: number): string | undefined {
  let s = start;
  let e = end;
  while (s < e && isTextSpace(units[s])) s += 1;
  while (e > s && isTextSpace(units[e - 1])) e -= 1;
  let out = '';
  let wrapper: Wrapper | null = null;
  let visible = false;
  for (let k = s; k < e; k += 1) {
    const unit = units[k];
    if (unit === undefined) continue;
    if (unit.wrapper !== wrapper) {
      if (wrapper !== null) out += wrapper.close;
      if (unit.wrapper !== null) out += unit.wrapper.open;
      wrapper = unit.wrapper;
    }
    out += unit.out;
    if (!/^\s$/u.test(unit.src)) visible = true;
  }
  if (wrapper !== null) out += wrapper.close;
  return visible ? out : undefined;
}

/**
 * The longest run of units from `start` whose rendering fits in `limit`, as the channel
 * counts it: it ends before `end`; `floor` is where it first reaches `MIN_SHARE` of the limit.
 */
function fitEnd(
  units: readonly Unit[],
  start: number,
  limit: number,
): { end: number; floor: number } {
  const enough = limit * MIN_SHARE;
  let length = 0;
  let end = start;
  let floor: number | undefined;
  let wrapper: Wrapper | null | undefined;
  while (end < units.length) {
    const unit = units[end];
    if (unit === undefined) break;
    let add = unit.size;
    if (unit.wrapper !== null && unit.wrapper !== wrapper) add += unit.wrapper.size;
    if (length + add > limit) break;
    length += add;
    wrapper = unit.wrapper;
    end += 1;
    if (floor === undefined && length >= enough) floor = end;
  }
  return { end, floor: floor ?? end };
}

/**
 * Escapes text for a channel's format and splits it into messages of at most `limit`
 * characters each, in UTF-16 code units (string `.length`), counted as the channel counts
 * them: for `HTML` and `MarkdownV2` on the text Telegram shows after parsing entities (an
 * `&amp;` or a `\.` is one character, `<code>` none), for `plain` (LINE, say) the text as
 * sent; `null` means one message, unsplit.
 *
 * - `plain`: the text as is.
 * - `HTML` (Telegram): `<`, `>` and `&` become entities; a fenced block (```lang … ```)
 *   becomes `<pre><code class="language-lang">…</code></pre>` and inline `code` becomes
 *   `<code>…</code>`, escaped inside.
 * - `MarkdownV2` (Telegram): every one of `` _*[]()~`>#+-=|{}.!\ `` is backslash-escaped outside
 *   code; inside code blocks and inline code only `` ` `` and `\` are, and the fences stay.
 *
 * A chunk ends at the best break in its last half (by preference a paragraph break, a line
 * break, a sentence's end, a space, a CJK comma); with none there, it is cut at the limit. So
 * no message holds only a heading or a word. No cut falls inside an escape sequence, an HTML
 * entity or a surrogate pair, nor (where that leaves half the limit) inside a character made
 * of several code points (a combining accent, a ZWJ emoji). A code block
 * cut in two is closed at the end of one chunk and reopened, with its language, at the start
 * of the next, so each chunk is well-formed alone. Whitespace where a chunk ends is dropped
 * (inside code only the newline that ends the line); no chunk is empty or whitespace-only, so
 * empty input gives `[]`. Line endings are normalised to `\n`; an empty code block is dropped.
 *
 * @throws NonRetryableError `CHUNK_LIMIT_INVALID` when `limit` is not a positive integer or is
 *   too small to hold one character (a surrogate pair counts two).
 */
export function formatForChannel(
  text: string,
  format: ChannelFormat,
  limit: number | null,
): string[] {
  if (limit !== null && (!Number.isInteger(limit) || limit < 1)) {
    throw new NonRetryableError('CHUNK_LIMIT_INVALID', 'chunk limit must be a positive integer', {
      status: 400,
      detail: { limit },
    });
  }
  const units = toUnits(parse(text.replace(/\r\n?/g, '\n'), format), format, limit);
  if (limit === null) {
    const whole = render(units, 0, units.length);
    return whole === undefined ? [] : [whole];
  }
  const widest = units.reduce((max, u) => Math.max(max, u.wrapper === null ? u.size : 0), 0);
  if (widest > limit) {
    throw new NonRetryableError(
      'CHUNK_LIMIT_INVALID',
      `chunk limit ${limit} cannot hold one character (${widest} needed)`,
      { status: 400, detail: { limit, needed: widest } },
    );
  }

  const breaks = findBreaks(units);
  const chunks: string[] = [];
  let start = 0;
  while (start < units.length) {
    while (isTextSpace(units[start])) start += 1;
    if (start >= units.length) break;
    const { end, floor } = fitEnd(units, start, limit);
    let cut = end;
    let next = end;
    if (end < units.length) {
      const best: (readonly [number, number] | undefined)[] = [];
      for (let p = end; p >= floor && p > start && best[PARAGRAPH] === undefined; p -= 1) {
        const candidate = breaks[p];
        if (candidate !== undefined && best[candidate.rank] === undefined) {
          best[candidate.rank] = [p, candidate.next];
        }
      }
      const chosen = best[PARAGRAPH] ?? best[LINE] ?? best[SENTENCE] ?? best[SPACE];
      if (chosen !== undefined) {
        [cut, next] = chosen;
      } else {
        // A hard cut: before the character the cut would split, if that leaves enough.
        while (cut > floor && units[cut]?.joined) cut -= 1;
        next = cut;
      }
    }
    const chunk = render(units, start, cut);
    if (chunk !== undefined) chunks.push(chunk);
    start = next;
  }
  return chunks;
}
