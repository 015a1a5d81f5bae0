import type { DatabasePool } from 'slonik';
import { z } from 'zod';
import { listApprovals } from '../../db/approvals.ts';
import { listApprovalNotices, listOutbound } from '../../db/outboundMessages.ts';
import { getRunWithEvent, listTransitions } from '../../db/runs.ts';
import { listToolCalls } from '../../db/toolCalls.ts';
import { withProject } from '../../db/withProject.ts';
import { Attachment } from '../contracts/conversationEvent.ts';
import { NotFoundError } from '../errors.ts';

/** The part of a stored event the view shows; an event from before attachments has none. */
const EventAttachments = z.object({
  message: z.object({ attachments: z.array(Attachment).default([]) }),
});

/**
 * A run as the API shows it: state, failure, output, what the message carried besides its text
 * (attachment references, with why one was not kept), timeline, the tool calls the gateway saw
 * (by digest: arguments stay in the `tool_calls` table), its approvals and the outbound ledger:
 * the answer's rows (status, reply, failure) in send order, then the approval notices, each
 * naming its approval and recipient.
 */
export async function describeRun(pool: DatabasePool, projectId: string, runId: string) {
  if (!z.uuid().safeParse(runId).success)
    throw new NotFoundError('RUN_NOT_FOUND', `no run "${runId.slice(0, 64)}"`);
  return withProject(pool, projectId, async (tx) => {
    const found = await getRunWithEvent(tx, runId);
    if (!found) throw new NotFoundError('RUN_NOT_FOUND', `no run "${runId}"`);
    const run = found.run;
    const attachments = EventAttachments.safeParse(found.eventBody);
    const timeline = await listTransitions(tx, runId);
    const outbound = [
      ...(await listOutbound(tx, runId, { alerts: true })),
      ...(await listApprovalNotices(tx, { runId })),
    ];
    const calls = await listToolCalls(tx, { runId });
    const approvals = await listApprovals(tx, { runId });
    const output = run.output as { text?: string } | null;
    return {
      run_id: run.runId,
      project_id: run.projectId,
      trace_id: run.traceId,
      state: run.state,
      agent: run.agent,
      session_key: run.sessionKey,
      mode: run.mode,
      live: run.live,
      pinned: run.pinned,
      output:
        run.state === 'COMPLETED' || run.state === 'SANITIZED' ? (output?.text ?? null) : null,
      failure: run.failureCode ? { code: run.failureCode, message: run.failureMessage } : null,
      attachments: (attachments.success ? attachments.data.message.attachments : []).map((a) => ({
        kind: a.kind,
        ref: a.ref,
        mime_type: a.mimeType ?? null,
        size_bytes: a.sizeBytes ?? null,
        name: a.name ?? null,
        omitted: a.omitted ?? null,
      })),
      created_at: new Date(run.createdAt).toISOString(),
      completed_at: run.completedAt ? new Date(run.completedAt).toISOString() : null,
      timeline: timeline.map((t) => ({
        stage: t.stage,
        detail: t.detail,
        from: t.fromState,
        to: t.toState,
        at: new Date(t.at).toISOString(),
        ms: Math.max(0, Math.round(t.at - t.startedAt)),
      })),
      tool_calls: calls.map((c) => ({
        tool: c.server ? `${c.server}.${c.tool}` : c.tool,
        risk: c.risk,
        status: c.status,
        code: c.code,
        latency_ms: c.latencyMs,
        arguments_sha256: c.argumentsSha256,
        result_sha256: c.resultSha256,
        at: new Date(c.createdAt).toISOString(),
      })),
      approvals: [...approvals].reverse().map((a) => ({
        approval_id: a.approvalId,
        tool: a.tool,
        status: a.status,
        reasons: a.reasons,
        call_sha256: a.callSha256,
        expires_at: new Date(a.expiresAt).toISOString(),
        decided_by: a.decidedBy,
        decided_via: a.decidedVia,
      })),
      outbound: outbound.map((o) => ({
        kind: o.kind,
        chunk: o.chunkIndex,
        status: o.status,
        method: o.method,
        attempts: o.attempts,
        sent_at: o.sentAt ? new Date(o.sentAt).toISOString() : null,
        error: o.errorCode,
        ...(o.kind === 'approval' ? { approval_id: o.approvalId, recipient: o.recipient } : {}),
        ...(o.kind === 'alert' ? { alert: o.alertKey, recipient: o.recipient } : {}),
      })),
    };
  });
}
