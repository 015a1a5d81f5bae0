import { NonRetryableError } from '../errors.ts';
import { toChannelUnits, type ChannelFormat, type Unit, type Wrapper } from './toChannelUnits.ts';

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
 * `&amp;` or a `\.` is one character, `<code>` none), for `plain` (LINE, say), `mrkdwn`
 * (Slack) and `discord` the text as sent; `null` means one message, unsplit.
 *
 * - `plain`: the text as is.
 * - `HTML` (Telegram): `<`, `>` and `&` become entities; a fenced block (```lang … ```)
 *   becomes `<pre><code class="language-lang">…</code></pre>` and inline `code` becomes
 *   `<code>…</code>`, escaped inside.
 * - `mrkdwn` (Slack): `&`, `<` and `>` become `&amp;`, `&lt;`, `&gt;` everywhere, code included
 *   (so no text can form a `<@U…>` mention, a `<!channel>` or a link); fences and inline code
 *   stay (a fence without its language, which Slack would show as text). Counted as sent.
 * - `discord` (Discord markdown): every one of `` \*_~`|><#-[]@ `` is backslash-escaped outside
 *   code (so no text can form emphasis, a masked link, a `<@…>` mention or `@everyone`);
 *   fences (with their language) and inline code stay, a backtick inside them shown as `ˋ`.
 *   Counted as sent.
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
  const units = toChannelUnits(text.replace(/\r\n?/g, '\n'), format, limit);
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
