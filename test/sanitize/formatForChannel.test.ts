import { describe, expect, it } from 'vitest';
import { CHANNEL_TEXT_LIMITS } from '../../pipeline/contracts/channelContract.ts';
import { NonRetryableError } from '../../pipeline/errors.ts';
import { formatForChannel } from '../../pipeline/sanitize/formatForChannel.ts';

const TELEGRAM = CHANNEL_TEXT_LIMITS.telegram;
const MDV2_SPECIAL = '_*[]()~`>#+-=|{}.!\\';
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** Problems with one Telegram HTML chunk: unbalanced tags, or a raw `<`, `>` or `&`. */
function htmlProblems(chunk: string): string[] {
  const problems: string[] = [];
  const stack: string[] = [];
  for (const match of chunk.matchAll(/<(\/?)(pre|code)(?: class="language-[\w+#-]+")?>/g)) {
    const [, closing, tag = ''] = match;
    if (closing === '') stack.push(tag);
    else if (stack.pop() !== tag) problems.push(`unexpected </${tag}>`);
  }
  if (stack.length > 0) problems.push(`unclosed ${stack.join(', ')}`);
  const bare = chunk.replace(/<\/?(?:pre|code)(?: class="language-[\w+#-]+")?>/g, '');
  if (/[<>]/.test(bare)) problems.push('raw < or >');
  if (/&(?!(?:amp|lt|gt);)/.test(bare)) problems.push('raw &');
  return problems;
}

function htmlToText(chunk: string): string {
  return chunk
    .replace(/<[^>]+>/g, '')
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&amp;/g, '&');
}

/**
 * Walks one MarkdownV2 chunk as Telegram does. Returns the problems (an unescaped special
 * character outside code, a code block or span left open, a dangling backslash) and the
 * text a reader sees, markup removed.
 */
function readMarkdownV2(chunk: string): { problems: string[]; text: string } {
  const problems: string[] = [];
  let text = '';
  let mode: 'text' | 'pre' | 'code' = 'text';
  let i = 0;
  while (i < chunk.length) {
    const ch = chunk.charAt(i);
    if (ch === '\\') {
      if (i + 1 >= chunk.length) problems.push('dangling backslash');
      text += chunk.charAt(i + 1);
      i += 2;
      continue;
    }
    if (mode !== 'code' && chunk.startsWith('```', i)) {
      if (mode === 'text') {
        const nl = chunk.indexOf('\n', i);
        i = nl === -1 ? chunk.length : nl + 1;
        mode = 'pre';
      } else {
        if (text.endsWith('\n')) text = text.slice(0, -1);
        i += 3;
        mode = 'text';
      }
      continue;
    }
    if (ch === '`') {
      if (mode === 'pre') problems.push('unescaped ` in pre');
      mode = mode === 'code' ? 'text' : mode === 'text' ? 'code' : mode;
      i += 1;
      continue;
    }
    if (mode === 'text' && MDV2_SPECIAL.includes(ch)) problems.push(`unescaped ${ch}`);
    text += ch;
    i += 1;
  }
  if (mode !== 'text') problems.push(`unclosed ${mode}`);
  return { problems, text };
}

/** Deterministic prose with every character either format escapes, and an emoji. */
function prose(words: number, seed: number): string {
  const vocabulary = [
    'alpha',
    'beta',
    'a<b',
    'x&y',
    'c>d',
    'snake_case',
    'v1.5',
    '(paren)',
    '[link]',
    'wow!',
    '#tag',
    'a+b=c',
    'pipe|line',
    '{brace}',
    '~tilde',
    'hyphen-ated',
    '*star*',
    'back\\slash',
    'naïve',
    '😀emoji',
    'quote>',
  ];
  const out: string[] = [];
  for (let i = 0; i < words; i += 1) {
    out.push(vocabulary[(i * 7 + seed) % vocabulary.length] ?? 'x');
    if (i % 23 === 22) out.push('\n');
    else if (i % 61 === 60) out.push('\n\n');
  }
  return out.join(' ').replace(/ ?\n ?/g, '\n');
}

function codeLines(count: number): string {
  return Array.from(
    { length: count },
    (_, i) => `    value_${i} = compute(a < b, "x&y", \`t\`) \\ ${i} # ok`,
  ).join('\n');
}

/** A 10k document: prose, a long python block, prose with inline code, prose. */
function longDocument(): { text: string; words: string[] } {
  const text = [
    prose(400, 1),
    '',
    '```python',
    codeLines(110),
    '```',
    '',
    'Run `make test` now.',
    '',
    prose(400, 5),
  ].join('\n');
  const words = text
    .split('\n')
    .filter((line) => !line.startsWith('```'))
    .join('\n')
    .replace(/`make test`/g, 'make test')
    .split(/\s+/)
    .filter(Boolean);
  return { text, words };
}

const wordsOf = (texts: readonly string[]) => texts.join('\n').split(/\s+/).filter(Boolean);

describe('formatForChannel: escaping', () => {
  it('gives no chunk for empty or whitespace-only input', () => {
    for (const format of ['plain', 'HTML', 'MarkdownV2'] as const) {
      expect(formatForChannel('', format, null)).toEqual([]);
      expect(formatForChannel(' \n\t\n ', format, 10)).toEqual([]);
    }
  });

  it('sends plain text as is, trimmed, in one chunk when there is no limit', () => {
    const text = 'a <b> & *c* `d`\n\n```js\nx\n```';
    expect(formatForChannel(`  ${text}\n`, 'plain', null)).toEqual([text]);
  });

  it('escapes <, > and & for Telegram HTML and nothing else', () => {
    expect(formatForChannel('<b>Tom & "Jerry"</b> 1 > 0 *x* _y_', 'HTML', null)).toEqual([
      '&lt;b&gt;Tom &amp; "Jerry"&lt;/b&gt; 1 &gt; 0 *x* _y_',
    ]);
  });

  it('turns a fenced block into pre/code with its language and inline code into code', () => {
    const text = 'Try `a<b` here:\n```ts\nif (a < b && c) {\n  go();\n}\n```\nDone.';
    expect(formatForChannel(text, 'HTML', null)).toEqual([
      'Try <code>a&lt;b</code> here:\n<pre><code class="language-ts">if (a &lt; b &amp;&amp; c) {\n  go();\n}</code></pre>\nDone.',
    ]);
  });

  it('gives a fenced block without a language a bare pre/code', () => {
    expect(formatForChannel('```\nx\n```', 'HTML', null)).toEqual(['<pre><code>x</code></pre>']);
  });

  it('escapes every MarkdownV2 special character outside code', () => {
    const [chunk] = formatForChannel(MDV2_SPECIAL, 'MarkdownV2', null);
    expect(chunk).toBe([...MDV2_SPECIAL].map((ch) => `\\${ch}`).join(''));
    expect(readMarkdownV2(chunk ?? '')).toEqual({ problems: [], text: MDV2_SPECIAL });
  });

  it('escapes only ` and \\ inside MarkdownV2 code and keeps the fences', () => {
    const text = 'Use `a.b\\c` then:\n```py\nx = [1] # a_b `q` \\n\n```\nok!';
    expect(formatForChannel(text, 'MarkdownV2', null)).toEqual([
      'Use `a.b\\\\c` then:\n```py\nx = [1] # a_b \\`q\\` \\\\n\n```\nok\\!',
    ]);
  });

  it('keeps an unclosed backtick as an escaped character', () => {
    expect(formatForChannel("it's 5` tall", 'MarkdownV2', null)).toEqual(["it's 5\\` tall"]);
    expect(formatForChannel("it's 5` tall", 'HTML', null)).toEqual(["it's 5` tall"]);
  });

  it('reads inline code spans delimited by double backticks', () => {
    expect(formatForChannel('see `` a`b `` now', 'MarkdownV2', null)).toEqual(['see `a\\`b` now']);
  });

  it('runs an unclosed fence to the end of the text', () => {
    expect(formatForChannel('Intro\n```sh\necho <hi>\n', 'HTML', null)).toEqual([
      'Intro\n<pre><code class="language-sh">echo &lt;hi&gt;</code></pre>',
    ]);
  });

  it('normalises Windows line endings', () => {
    expect(formatForChannel('a\r\nb\r\n', 'plain', null)).toEqual(['a\nb']);
  });
});

describe('formatForChannel: splitting', () => {
  it('prefers a paragraph break, then a line break, a sentence, a space, then a hard cut', () => {
    expect(formatForChannel('aaaa bbbb\ncccc dddd\n\neeee', 'plain', 20)).toEqual([
      'aaaa bbbb\ncccc dddd',
      'eeee',
    ]);
    expect(formatForChannel('aaaaa bbbbb\ncccc dddd eeee', 'plain', 20)).toEqual([
      'aaaaa bbbbb',
      'cccc dddd eeee',
    ]);
    expect(formatForChannel('Alpha beta gamma. Delta epsilon', 'plain', 24)).toEqual([
      'Alpha beta gamma.',
      'Delta epsilon',
    ]);
    expect(formatForChannel('aaaa bbbb cccc dddd eeee', 'plain', 12)).toEqual([
      'aaaa bbbb',
      'cccc dddd',
      'eeee',
    ]);
    expect(formatForChannel('abcdefghij', 'plain', 4)).toEqual(['abcd', 'efgh', 'ij']);
  });

  it('counts the Telegram limit on the text shown after entity parsing, not on the escapes', () => {
    expect(formatForChannel('a.b.c.d.e.f', 'MarkdownV2', 6)).toEqual(['a\\.b\\.c\\.', 'd\\.e\\.f']);
    expect(formatForChannel('&&&&&&', 'HTML', 6)).toEqual(['&amp;'.repeat(6)]);
    expect(formatForChannel('a.b.c.d.e.f', 'plain', 6)).toEqual(['a.b.c.', 'd.e.f']);
  });

  it('never splits an HTML entity', () => {
    const chunks = formatForChannel('&&&&&&', 'HTML', 4);
    expect(chunks).toEqual(['&amp;'.repeat(4), '&amp;'.repeat(2)]);
  });

  it('never splits a MarkdownV2 escape sequence', () => {
    const chunks = formatForChannel('......', 'MarkdownV2', 4);
    expect(chunks).toEqual(['\\.'.repeat(4), '\\.'.repeat(2)]);
  });

  it('never splits a surrogate pair', () => {
    const text = '😀'.repeat(7) + 'a' + '𝒳'.repeat(5);
    for (const limit of [1 + 1, 3, 5]) {
      const chunks = formatForChannel(text, 'plain', limit);
      expect(chunks.join('')).toBe(text);
      for (const chunk of chunks) {
        expect(chunk.length).toBeLessThanOrEqual(limit);
        expect(chunk).not.toMatch(LONE_SURROGATE);
      }
    }
  });

  it('closes a split code block and reopens it with its language', () => {
    expect(formatForChannel('```js\nline1\nline2\nline3\n```', 'MarkdownV2', 7)).toEqual([
      '```js\nline1\n```',
      '```js\nline2\n```',
      '```js\nline3\n```',
    ]);
    const html = formatForChannel('```js\nline1\nline2\n```', 'HTML', 6);
    expect(html).toEqual([
      '<pre><code class="language-js">line1</code></pre>',
      '<pre><code class="language-js">line2</code></pre>',
    ]);
  });

  it('keeps the indentation of a code line that starts a chunk', () => {
    expect(formatForChannel('```py\ndef f():\n    return 1\n```', 'MarkdownV2', 14)).toEqual([
      '```py\ndef f():\n```',
      '```py\n    return 1\n```',
    ]);
  });

  it('splits a long inline code span into well-formed spans', () => {
    const chunks = formatForChannel(`\`${'x'.repeat(30)}\``, 'HTML', 20);
    expect(chunks.length).toBeGreaterThan(1);
    for (const chunk of chunks) {
      expect(chunk).toMatch(/^<code>x+<\/code>$/);
      expect(htmlToText(chunk).length).toBeLessThanOrEqual(20);
    }
  });

  it('sends code as escaped text when the limit cannot hold its markup', () => {
    const chunks = formatForChannel('```typescript\na<b\n```', 'MarkdownV2', 1);
    expect(chunks).toEqual(['a', '<', 'b']);
  });

  it('never gives an empty or whitespace-only chunk', () => {
    const text = 'a\n\n\n\n     \n\nb     c\t\t\n\n' + ' '.repeat(50) + 'd';
    for (const limit of [1, 2, 3, 7]) {
      const chunks = formatForChannel(text, 'plain', limit);
      expect(chunks.length).toBeGreaterThan(0);
      for (const chunk of chunks) expect(chunk.trim()).not.toBe('');
      expect(wordsOf(chunks)).toEqual(['a', 'b', 'c', 'd']);
    }
  });

  it('refuses a limit that is not a positive integer or cannot hold one character', () => {
    expect(() => formatForChannel('x', 'plain', 0)).toThrow(NonRetryableError);
    expect(() => formatForChannel('x', 'plain', 2.5)).toThrow(NonRetryableError);
    expect(() => formatForChannel('a 😀 b', 'plain', 1)).toThrow(/cannot hold one character/);
  });
});

describe('formatForChannel: a 10k answer with a long code block for Telegram', () => {
  const doc = longDocument();

  it('is a long enough document to need several messages', () => {
    expect(doc.text.length).toBeGreaterThan(10_000);
  });

  it('splits HTML into well-formed chunks within 4096 that keep every word in order', () => {
    const chunks = formatForChannel(doc.text, 'HTML', TELEGRAM);
    expect(chunks.length).toBeGreaterThan(2);
    for (const chunk of chunks) {
      expect(htmlToText(chunk).length).toBeLessThanOrEqual(TELEGRAM);
      expect(htmlProblems(chunk)).toEqual([]);
      expect(chunk).not.toMatch(LONE_SURROGATE);
      expect(chunk.trim()).not.toBe('');
    }
    const withCode = chunks.filter((c) => c.includes('<pre><code class="language-python">'));
    expect(withCode.length).toBeGreaterThan(1);
    expect(wordsOf(chunks.map(htmlToText))).toEqual(doc.words);
  });

  it('splits MarkdownV2 into well-formed chunks within 4096 that keep every word in order', () => {
    const chunks = formatForChannel(doc.text, 'MarkdownV2', TELEGRAM);
    expect(chunks.length).toBeGreaterThan(2);
    const texts = chunks.map((chunk) => {
      const read = readMarkdownV2(chunk);
      expect(read.text.length).toBeLessThanOrEqual(TELEGRAM);
      expect(read.problems).toEqual([]);
      return read.text;
    });
    expect(chunks.filter((c) => c.includes('```python\n')).length).toBeGreaterThan(1);
    expect(wordsOf(texts)).toEqual(doc.words);
  });

  it('splits plain text within the limit and keeps every word in order', () => {
    const chunks = formatForChannel(doc.text, 'plain', TELEGRAM);
    for (const chunk of chunks) expect(chunk.length).toBeLessThanOrEqual(TELEGRAM);
    expect(wordsOf(chunks)).toEqual(doc.text.split(/\s+/).filter(Boolean));
  });

  it('cuts between code lines, not inside one', () => {
    const chunks = formatForChannel(doc.text, 'HTML', TELEGRAM);
    for (const chunk of chunks) {
      for (const block of chunk.matchAll(/<pre><code[^>]*>([\s\S]*?)<\/code><\/pre>/g)) {
        for (const line of htmlToText(block[1] ?? '').split('\n')) {
          expect(line).toMatch(/^ {4}value_\d+ = compute\(.*\) \\ \d+ # ok$/);
        }
      }
    }
  });

  it('keeps chunks small enough for a channel-configured limit too', () => {
    for (const limit of [500, 1000, 2048]) {
      const chunks = formatForChannel(doc.text, 'HTML', limit);
      for (const chunk of chunks) {
        expect(htmlToText(chunk).length).toBeLessThanOrEqual(limit);
        expect(htmlProblems(chunk)).toEqual([]);
      }
      expect(wordsOf(chunks.map(htmlToText))).toEqual(doc.words);
    }
  });
});

describe('formatForChannel: no message holds only a heading or a word', () => {
  const LINE_LIMIT = CHANNEL_TEXT_LIMITS.line;
  /** 7,887 characters of prose in one paragraph, sentences of twelve words. */
  const summaryProse = (() => {
    const words = 'the quick brown fox jumps over lazy dogs while operators watch'.split(' ');
    let text = '';
    for (let i = 0; text.length < 7888; i += 1) {
      text += `${words[i % words.length] ?? 'x'}${i % 12 === 11 ? '. ' : ' '}`;
    }
    return text.slice(0, 7889).trimEnd();
  })();
  const cjkSentences = '東京都の天気は晴れ、気温は二十度です。'.repeat(600).slice(0, 11_000);

  // Was 7/4093/3793: the paragraph break after the heading was the best break in the first
  // 4096, so 'Summary' went out alone.
  it('keeps a heading with the prose after it (Summary + 7,887 characters, Telegram HTML)', () => {
    const chunks = formatForChannel(`Summary\n\n${summaryProse}`, 'HTML', TELEGRAM);
    expect(chunks.map((c) => c.length)).toEqual([4051, 3844]);
    expect(chunks[0]).toMatch(/^Summary\n\nthe quick/);
    // It ends at a sentence's end, the best break in its last half.
    expect(chunks[0]).toMatch(/ brown\.$/);
  });

  // Was 5/5000/5000/1000: the heading alone, then hard cuts mid-sentence.
  it('keeps a CJK heading with its text and cuts CJK text at a full stop (LINE)', () => {
    const chunks = formatForChannel(`概要まとめ\n\n${cjkSentences}`, 'plain', LINE_LIMIT);
    expect(chunks.map((c) => c.length)).toEqual([4985, 4997, 1025]);
    expect(chunks[0]).toMatch(/^概要まとめ\n\n東京都/);
    for (const chunk of chunks.slice(0, -1)) expect(chunk).toMatch(/。$/);
  });

  it('cuts at the limit when the last half of it has no break at all', () => {
    const chunks = formatForChannel(`概要\n\n${'あ'.repeat(12_000)}`, 'plain', LINE_LIMIT);
    expect(chunks.map((c) => c.length)).toEqual([5000, 5000, 2004]);
  });

  it('never splits a surrogate pair on a hard cut', () => {
    const text = `概要\n\n${'𠮷'.repeat(3000)}`;
    const chunks = formatForChannel(text, 'plain', LINE_LIMIT);
    expect(chunks.map((c) => c.length)).toEqual([5000, 1004]);
    for (const chunk of chunks) expect(chunk).not.toMatch(LONE_SURROGATE);
    expect(chunks.join('')).toBe(text);
  });

  it('does not cut a character made of several code points on a hard cut', () => {
    const accented = 'e\u0301'.repeat(6);
    expect(formatForChannel(accented, 'plain', 5)).toEqual([
      'e\u0301e\u0301',
      'e\u0301e\u0301',
      'e\u0301e\u0301',
    ]);
    const family = '👨\u200d👩\u200d👧';
    expect(formatForChannel(family.repeat(3), 'plain', 10)).toEqual([family, family, family]);
  });

  // Was 4 messages of 4096/4096/4095/2109 escaped characters: the limit was measured on the
  // HTML with its entities, which Telegram does not count.
  it('sizes &/</>-heavy Telegram HTML on the text Telegram counts (3 messages, not 4)', () => {
    const text = 'a & b < c > d '.repeat(600);
    const chunks = formatForChannel(text, 'HTML', TELEGRAM);
    expect(chunks.map((c) => htmlToText(c).length)).toEqual([4095, 4095, 207]);
    expect(chunks.map(htmlToText).join(' ')).toBe(text.trim());
  });
});
