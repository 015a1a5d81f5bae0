/**
 * A piece of Markdown-ish text: ordinary text, a fenced code block (with its language, if the
 * fence names one) or an inline code span.
 */
export type CodeSegment =
  | { readonly kind: 'text'; readonly text: string }
  | { readonly kind: 'pre'; readonly lang: string; readonly body: string }
  | { readonly kind: 'code'; readonly body: string };

const FENCE_OPEN = /^( {0,3})(`{3,})([^`]*)$/;
const LANG = /^[A-Za-z0-9_+#-]{1,32}/;

/** Splits fenced code blocks (```lang … ```, closed by a fence at least as long) out of text. */
function splitFences(text: string): CodeSegment[] {
  const segments: CodeSegment[] = [];
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
function splitInline(text: string): CodeSegment[] {
  const segments: CodeSegment[] = [];
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

/**
 * Splits the code out of text, in order: fenced blocks (```lang … ```, closed by a fence at
 * least as long, or by the end of the text), then inline spans (a run of backticks closed by a
 * run of the same length on the same line) in the text between them. An unclosed backtick
 * stays literal text; text segments may be empty.
 */
export function splitCodeSegments(text: string): CodeSegment[] {
  return splitFences(text).flatMap((s) => (s.kind === 'text' ? splitInline(s.text) : [s]));
}
