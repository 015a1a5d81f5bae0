import {
  getDefaultEnvironment,
  StdioClientTransport,
} from '@modelcontextprotocol/sdk/client/stdio.js';
import type { GatewayServer } from '../contracts/mcpGatewayContract.ts';
import { redactKnownValues } from '../sanitize/redactSecrets.ts';

/**
 * A line longer than this is passed on as it stands rather than held for its end, so a server
 * that never writes a newline cannot grow the buffer without bound.
 */
const MAX_PARTIAL_LINE = 8192;

/**
 * The transport to a stdio MCP server: a child process started (on connect) with the default
 * environment plus `env`, the server's resolved credentials. Its stderr is read line by line,
 * so a value split across two pipe chunks is still found, and each non-empty line is handed to
 * `onStderrLine` with every one of the `known` credential values removed.
 *
 * @param known - the values to remove from stderr: the project's credentials, not only the
 *   ones this server was given
 */
export function createStdioTransport(
  transport: Extract<GatewayServer['transport'], { type: 'stdio' }>,
  {
    env,
    known,
    onStderrLine,
  }: {
    env: Record<string, string>;
    known: readonly string[];
    onStderrLine: (line: string) => void;
  },
): StdioClientTransport {
  const stdio = new StdioClientTransport({
    command: transport.command,
    args: transport.args,
    env: { ...getDefaultEnvironment(), ...env },
    stderr: 'pipe',
  });
  let partial = '';
  stdio.stderr?.on('data', (chunk: Buffer) => {
    const lines = (partial + chunk.toString('utf8')).split('\n');
    partial = lines.pop() ?? '';
    if (partial.length > MAX_PARTIAL_LINE) {
      lines.push(partial);
      partial = '';
    }
    for (const raw of lines) {
      const line = redactKnownValues(raw, known).text.trimEnd();
      if (line) onStderrLine(line);
    }
  });
  return stdio;
}
