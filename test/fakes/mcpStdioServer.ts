/**
 * A fake MCP server over stdio: the tools of `registerFakeTools`, run as
 * `node test/fakes/mcpStdioServer.ts` (Node 24 strips the types). Start it with
 * `mcpStdioServerCommand()` from `./mcpTools.ts`.
 *
 * Environment:
 * - `FAKE_MCP_TOKEN`: the credential the caller hands the server, as a real server is given
 *   e.g. `GITHUB_TOKEN`; reported with every call and echoed by `leak`.
 * - `FAKE_MCP_EXPECTED_TOKEN`: the only credential `lookup` accepts; any when unset.
 * - `FAKE_MCP_EXTRA_TOOLS`: how many `extra_*` tools to register.
 * - `FAKE_MCP_CARELESS`: when set, the server prints its credential to stderr at start, as a
 *   careless server might — the gateway must keep it out of its logs.
 * - `FAKE_MCP_LOG`: a file to which one JSON line `{ tool, arguments, credential, pid }` is
 *   appended per call, before it is answered (read it with `readStdioCalls`).
 *
 * Stdout is the transport: nothing but protocol messages may be written to it.
 */
import { appendFileSync } from 'node:fs';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { registerFakeTools } from './mcpTools.ts';

const credential = process.env['FAKE_MCP_TOKEN'];
const logPath = process.env['FAKE_MCP_LOG'];

const server = new McpServer({ name: 'fake-mcp-stdio', version: '1.0.0' });
registerFakeTools(server, {
  token: process.env['FAKE_MCP_EXPECTED_TOKEN'],
  extraTools: Number(process.env['FAKE_MCP_EXTRA_TOOLS'] ?? 0),
  credential: () => credential,
  onCall: (call) => {
    // Synchronous, so the line is on disk before the client sees the answer.
    if (logPath) appendFileSync(logPath, JSON.stringify({ ...call, pid: process.pid }) + '\n');
  },
});
if (process.env['FAKE_MCP_CARELESS']) process.stderr.write(`starting with token ${credential}\n`);
// The client closing our stdin is the end of the session; don't wait for a `slow` call's timer.
process.stdin.once('end', () => process.exit(0));
await server.connect(new StdioServerTransport());
