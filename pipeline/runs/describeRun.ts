import type { DatabasePool } from 'slonik';
import { z } from 'zod';
import { listOutbound } from '../../db/outboundMessages.ts';
import { getRun, listTransitions } from '../../db/runs.ts';
import { withProject } from '../../db/withProject.ts';
import { NotFoundError } from '../errors.ts';

/** A run as the API shows it: state, failure, output, timeline and outbound ledger. */
export async function describeRun(pool: DatabasePool, projectId: string, runId: string) {
  if (!z.uuid().safeParse(runId).success)
    throw new NotFoundError('RUN_NOT_FOUND', `no run "${runId.slice(0, 64)}"`);
  return withProject(pool, projectId, async (tx) => {
    const run = await getRun(tx, runId);
    if (!run) throw new NotFoundError('RUN_NOT_FOUND', `no run "${runId}"`);
    const timeline = await listTransitions(tx, runId);
    const outbound = await listOutbound(tx, runId);
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
      outbound: outbound.map((o) => ({
        kind: o.kind,
        chunk: o.chunkIndex,
        status: o.status,
        method: o.method,
        attempts: o.attempts,
        sent_at: o.sentAt ? new Date(o.sentAt).toISOString() : null,
        error: o.errorCode,
      })),
    };
  });
}
