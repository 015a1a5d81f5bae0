import type { ToolStepBody } from '../../db/runSteps.ts';
import type { Run } from '../../db/runs.ts';
import { answeredOutcome, finishToolCall, type ToolCallOutcome } from '../../db/toolCalls.ts';
import { withProject } from '../../db/withProject.ts';
import type { ContractBodies } from '../contracts/tenantFile.ts';
import { NonRetryableError } from '../errors.ts';
import type { ResolvedTool } from '../mcp/authorizeToolCall.ts';
import { sanitizeToolResult } from '../mcp/sanitizeToolResult.ts';
import { ToolCallError } from '../mcp/ToolCallError.ts';
import type { StageContext } from '../StageContext.ts';
import type { CallRecorder } from './createCallRecorder.ts';

/**
 * Makes one call the gateway allowed, through the MCP Gateway, and settles it in one
 * transaction: its `tool_calls` row (`callId`, already `started`) gets the outcome, with its
 * audit row and its checkpoint. A result enters the checkpoint only through the context
 * firewall ({@link sanitizeToolResult}); a failure the gateway reports ({@link ToolCallError})
 * is settled `timeout`, `uncertain` (a non-read call that may have been sent) or `error`, and
 * the model is told so. Any other error is thrown.
 *
 * Harmless twice only because the row was recorded `started` first (see
 * `settleRestartedCall`): a retry after a crash here makes a read again and settles a write
 * `uncertain`, never repeating it.
 */
export async function makeToolCall(
  ctx: StageContext,
  a: {
    run: Run;
    resolved: ResolvedTool;
    arguments: Record<string, unknown>;
    callId: string;
    runtime: ContractBodies['runtime'];
    known: readonly string[];
    record: CallRecorder;
    signal?: AbortSignal;
  },
): Promise<void> {
  const { run, record } = a;
  const { server, tool, toolId } = a.resolved;
  const started = performance.now();
  let outcome: ToolCallOutcome;
  let step: Omit<ToolStepBody, 'callId' | 'callIndex' | 'toolId'>;
  try {
    const raw = await ctx.gateway.call(run.projectId, server, {
      tool: tool.name,
      arguments: a.arguments,
      timeoutMs: Math.min(tool.timeoutMs, a.runtime.timeouts.toolMs),
      idempotent: tool.risk === 'read',
      ...(a.signal ? { signal: a.signal } : {}),
    });
    const clean = sanitizeToolResult(toolId, raw, tool.result, a.known);
    const answered = answeredOutcome(clean, Math.round(performance.now() - started));
    outcome = answered;
    step = {
      status: answered.status,
      code: answered.code ?? null,
      content: clean.content,
      untrusted: true,
    };
  } catch (error) {
    if (!(error instanceof ToolCallError)) {
      // Not the call's own failure. A cancelled job (shutdown) may have sent it: the row stays
      // `started`, so the retry makes a read again and settles a write `uncertain`. An error no
      // retry will fix (a missing credential) ends the run, and the row says why.
      if (error instanceof NonRetryableError) {
        await withProject(ctx.pool, run.projectId, (tx) =>
          finishToolCall(tx, a.callId, { status: 'error', code: error.code }),
        ).catch(() => {});
      }
      throw error;
    }
    const uncertain = error.maybeSent && tool.risk !== 'read';
    const status = error.code === 'TOOL_TIMEOUT' ? 'timeout' : uncertain ? 'uncertain' : 'error';
    outcome = { status, code: error.code, latencyMs: Math.round(performance.now() - started) };
    const note =
      uncertain || status === 'timeout' ? '; the call may have been made and is not repeated' : '';
    // A server's own error text is its words: redacted, capped and marked untrusted like a
    // result. The gateway's messages (timeout, unreachable) are ours and quote no server.
    const quotesServer = error.code === 'TOOL_PROTOCOL_ERROR';
    const said = quotesServer
      ? sanitizeToolResult(
          toolId,
          {
            content: [{ type: 'text', text: `${status}: ${error.message}${note}` }],
            isError: true,
          },
          tool.result,
          a.known,
        ).content
      : `${status}: ${error.message}${note}`;
    step = { status, code: error.code, content: said, untrusted: quotesServer };
  }
  await withProject(ctx.pool, run.projectId, async (tx) => {
    await finishToolCall(tx, a.callId, outcome);
    await record.audit(tx, outcome.status, {
      code: outcome.code ?? null,
      call_id: a.callId,
      result_sha256: outcome.resultSha256 ?? null,
    });
    await record.checkpoint(tx, step);
  });
}
