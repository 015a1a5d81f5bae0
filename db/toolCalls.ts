import { sql, type CommonQueryMethods } from 'slonik';
import { z } from 'zod';
import type { ErrorCode } from '../pipeline/errors.ts';

export const TOOL_CALL_STATUSES = [
  'started',
  'ok',
  'error',
  'timeout',
  'refused',
  'proposed',
  'awaiting_approval',
  'uncertain',
] as const;
export type ToolCallStatus = (typeof TOOL_CALL_STATUSES)[number];

const ToolCallRow = z.object({
  callId: z.string(),
  projectId: z.string(),
  runId: z.string().nullable(),
  stepIndex: z.number().nullable(),
  callIndex: z.number().nullable(),
  traceId: z.string(),
  agent: z.string(),
  via: z.enum(['run', 'mcp_endpoint']),
  server: z.string(),
  tool: z.string(),
  risk: z.string().nullable(),
  arguments: z.unknown(),
  argumentsSha256: z.string(),
  credentialRefs: z.array(z.string()),
  status: z.enum(TOOL_CALL_STATUSES),
  code: z.string().nullable(),
  latencyMs: z.number().nullable(),
  resultSha256: z.string().nullable(),
  resultBytes: z.number().nullable(),
  createdAt: z.number(),
  finishedAt: z.number().nullable(),
});
/** One row of the gateway's call log. */
export type ToolCallRow = z.infer<typeof ToolCallRow>;

const COLUMNS = sql.fragment`
  call_id AS "callId", project_id AS "projectId", run_id AS "runId", step_index AS "stepIndex",
  call_index AS "callIndex", trace_id AS "traceId", agent, via, server, tool, risk, arguments,
  arguments_sha256 AS "argumentsSha256", credential_refs AS "credentialRefs", status, code,
  latency_ms AS "latencyMs", result_sha256 AS "resultSha256", result_bytes AS "resultBytes",
  created_at AS "createdAt", finished_at AS "finishedAt"`;

/** What a call is, before its outcome is known. */
export type ToolCallStart = {
  projectId: string;
  traceId: string;
  agent: string;
  server: string;
  tool: string;
  risk: string | null;
  /** Already redacted. */
  arguments: Record<string, unknown>;
  argumentsSha256: string;
  credentialRefs: readonly string[];
  /** A run's call: its model step and place; absent for a call from an external MCP client. */
  run?: { runId: string; stepIndex: number; callIndex: number };
};

/** How a call ended. */
export type ToolCallOutcome = {
  status: Exclude<ToolCallStatus, 'started'>;
  code?: ErrorCode | null;
  latencyMs?: number | null;
  resultSha256?: string | null;
  resultBytes?: number | null;
};

/**
 * Records a call with its status (`started` before it is made, or its final status when it is
 * never made). For a run's call the (run, step, call) key keeps one row: a second insert
 * returns the row that is there, so the caller sees what an earlier attempt did.
 */
export async function recordToolCall(
  db: CommonQueryMethods,
  call: ToolCallStart,
  outcome: ToolCallOutcome | { status: 'started' },
): Promise<{ row: ToolCallRow; created: boolean }> {
  const o: ToolCallOutcome = { code: null, ...outcome } as ToolCallOutcome;
  const finished = outcome.status !== 'started';
  const inserted = await db.maybeOne(sql.type(ToolCallRow)`
    INSERT INTO tool_calls (project_id, run_id, step_index, call_index, trace_id, agent, via,
                            server, tool, risk, arguments, arguments_sha256, credential_refs,
                            status, code, latency_ms, result_sha256, result_bytes, finished_at)
    VALUES (${call.projectId}, ${call.run?.runId ?? null}, ${call.run?.stepIndex ?? null},
            ${call.run?.callIndex ?? null}, ${call.traceId}, ${call.agent},
            ${call.run ? 'run' : 'mcp_endpoint'}, ${call.server}, ${call.tool}, ${call.risk},
            ${sql.jsonb(call.arguments as never)}, ${call.argumentsSha256},
            ${sql.array([...call.credentialRefs], 'text')}, ${o.status}, ${o.code ?? null},
            ${o.latencyMs ?? null}, ${o.resultSha256 ?? null}, ${o.resultBytes ?? null},
            CASE WHEN ${finished} THEN now() END)
    ON CONFLICT (run_id, step_index, call_index) WHERE run_id IS NOT NULL DO NOTHING
    RETURNING ${COLUMNS}`);
  if (inserted) return { row: inserted, created: true };
  // Locked, so two workers on one run cannot both read a call as not yet made: the second
  // waits for the first's transaction and sees what it wrote.
  const existing = await db.one(sql.type(ToolCallRow)`
    SELECT ${COLUMNS} FROM tool_calls
     WHERE run_id = ${call.run!.runId} AND step_index = ${call.run!.stepIndex}
       AND call_index = ${call.run!.callIndex}
       FOR UPDATE`);
  return { row: existing, created: false };
}

/** Settles a call (started, or awaiting approval) with its outcome. */
export async function finishToolCall(
  db: CommonQueryMethods,
  callId: string,
  outcome: ToolCallOutcome,
): Promise<void> {
  await db.query(sql.unsafe`
    UPDATE tool_calls SET status = ${outcome.status}, code = ${outcome.code ?? null},
           latency_ms = ${outcome.latencyMs ?? null}, result_sha256 = ${outcome.resultSha256 ?? null},
           result_bytes = ${outcome.resultBytes ?? null}, finished_at = now()
     WHERE call_id = ${callId}`);
}

/** Marks an approved call as about to be made (awaiting_approval -> started). */
export async function restartToolCall(db: CommonQueryMethods, callId: string): Promise<void> {
  await db.query(sql.unsafe`
    UPDATE tool_calls SET status = 'started', created_at = now()
     WHERE call_id = ${callId} AND status = 'awaiting_approval'`);
}

/** A run's calls, in the order they were asked for. */
export async function listToolCalls(
  db: CommonQueryMethods,
  filter: { runId?: string; limit?: number } = {},
): Promise<readonly ToolCallRow[]> {
  return db.any(sql.type(ToolCallRow)`
    SELECT ${COLUMNS} FROM tool_calls
     WHERE (${filter.runId ?? null}::uuid IS NULL OR run_id = ${filter.runId ?? null}::uuid)
     ORDER BY step_index NULLS LAST, call_index, created_at
     LIMIT ${filter.limit ?? 500}`);
}

/** The outcome of a call the server answered: `error` when its result says so. */
export function answeredOutcome(
  result: { isError: boolean; resultSha256: string; resultBytes: number },
  latencyMs: number,
): ToolCallOutcome & { status: 'ok' | 'error' } {
  return {
    status: result.isError ? 'error' : 'ok',
    code: result.isError ? 'TOOL_ERROR' : null,
    latencyMs,
    resultSha256: result.resultSha256,
    resultBytes: result.resultBytes,
  };
}
