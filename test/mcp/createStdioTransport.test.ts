import { describe, expect, it } from 'vitest';
import { createStdioTransport } from '../../pipeline/mcp/createStdioTransport.ts';

const TOKEN = 'stdio-token-5f2c9e1d';

/** Starts `script` under this Node as a stdio server would be, and collects its stderr lines. */
async function stderrOf(script: string, known: readonly string[]): Promise<string[]> {
  const lines: string[] = [];
  const transport = createStdioTransport(
    { type: 'stdio', command: process.execPath, args: ['-e', script], env: {} },
    { env: { SPLIT_TOKEN: TOKEN }, known, onStderrLine: (line) => lines.push(line) },
  );
  const exited = new Promise<void>((resolve) => {
    transport.onclose = resolve;
  });
  await transport.start();
  await exited;
  return lines;
}

describe('createStdioTransport', () => {
  it('redacts a credential written across two stderr chunks, line by line', async () => {
    // The token is cut in half between two writes, a tick apart, so the pipe delivers two chunks.
    const script = `
      const t = process.env.SPLIT_TOKEN;
      process.stderr.write('starting with ' + t.slice(0, 7));
      setTimeout(() => process.stderr.write(t.slice(7) + ' ok\\n\\n  \\nsecond line\\n'), 50);
    `;
    const lines = await stderrOf(script, [TOKEN]);
    expect(lines).toEqual(['starting with [REDACTED] ok', 'second line']);
  });

  it('passes on a line that never ends once it outgrows the buffer, redacted', async () => {
    const script = `process.stderr.write(process.env.SPLIT_TOKEN + 'x'.repeat(9000));`;
    const lines = await stderrOf(script, [TOKEN]);
    expect(lines).toHaveLength(1);
    expect(lines[0]?.startsWith('[REDACTED]xxx')).toBe(true);
    expect(lines.join('')).not.toContain(TOKEN);
  });
});
