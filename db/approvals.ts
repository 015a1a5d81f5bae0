import { sql, type CommonQueryMethods } from 'slonik';
import { z } from 'zod';

export const APPROVAL_STATUSES = ['pending', 'approved', 'rejected', 'expired'] as const;
export type ApprovalStatus = (typeof APPROVAL_STATUSES)[number];
export type ApprovalDecision = 'approved' | 'rejected' | 'expired';
export type DecidedVia = 'api' | 'telegram' | 'slack' | 'discord' | 'cli' | 'sweeper';

const ApprovalRow = z.object({
  approvalId: z.string(),
  projectId: z.string(),
  runId: z.string(),
  traceId: z.string(),
  stepIndex: z.number(),
  callIndex: z.number(),
  agent: z.string(),
  tool: z.string(),
  risk: z.string(),
  arguments: z.record(z.string(), z.unknown()),
  callSha256: z.string(),
  reasons: z.array(z.string()),
  status: z.enum(APPROVAL_STATUSES),
  expiresAt: z.number(),
  decidedBy: z.string().nullable(),
  decidedVia: z.string().nullable(),
  decidedAt: z.number().nullable(),
  createdAt: z.number(),
});
/** One approval: the exact call it is bound to, and its decision. */
export type Approval = z.infer<typeof ApprovalRow>;

const COLUMNS = sql.fragment`
  approval_id AS "approvalId", project_id AS "projectId", run_id AS "runId",
  trace_id AS "traceId", step_index AS "stepIndex", call_index AS "callIndex", agent, tool,
  risk, arguments, call_sha256 AS "callSha256", reasons, status, expires_at AS "expiresAt",
  decided_by AS "decidedBy", decided_via AS "decidedVia", decided_at AS "decidedAt",
  created_at AS "createdAt"`;

/**
 * Asks for a decision on one call of a run. The (run, step, call) key keeps one approval per
 * call: asking again returns the one there.
 */
export async function requestApproval(
  db: CommonQueryMethods,
  a: {
    projectId: string;
    runId: string;
    traceId: string;
    stepIndex: number;
    callIndex: number;
    agent: string;
    tool: string;
    risk: string;
    arguments: Record<string, unknown>;
    callSha256: string;
    reasons: readonly string[];
    ttlSeconds: number;
  },
): Promise<Approval> {
  const inserted = await db.maybeOne(sql.type(ApprovalRow)`
    INSERT INTO approvals (project_id, run_id, trace_id, step_index, call_index, agent, tool,
                           risk, arguments, call_sha256, reasons, expires_at)
    VALUES (${a.projectId}, ${a.runId}, ${a.traceId}, ${a.stepIndex}, ${a.callIndex}, ${a.agent},
            ${a.tool}, ${a.risk}, ${sql.jsonb(a.arguments as never)}, ${a.callSha256},
            ${sql.array([...a.reasons], 'text')},
            now() + make_interval(secs => ${a.ttlSeconds}))
    ON CONFLICT (run_id, step_index, call_index) DO NOTHING
    RETURNING ${COLUMNS}`);
  return (
    inserted ??
    (await db.one(sql.type(ApprovalRow)`
      SELECT ${COLUMNS} FROM approvals
       WHERE run_id = ${a.runId} AND step_index = ${a.stepIndex} AND call_index = ${a.callIndex}`))
  );
}

/** One approval of this transaction's project, or null. */
export async function getApproval(
  db: CommonQueryMethods,
  approvalId: string,
): Promise<Approval | null> {
  return db.maybeOne(
    sql.type(ApprovalRow)`SELECT ${COLUMNS} FROM approvals WHERE approval_id = ${approvalId}`,
  );
}

/** The approval of one call of a run, or null. */
export async function approvalForCall(
  db: CommonQueryMethods,
  call: { runId: string; stepIndex: number; callIndex: number },
): Promise<Approval | null> {
  return db.maybeOne(sql.type(ApprovalRow)`
    SELECT ${COLUMNS} FROM approvals
     WHERE run_id = ${call.runId} AND step_index = ${call.stepIndex} AND call_index = ${call.callIndex}`);
}

/** The project's approvals, newest first, optionally of one status. */
export async function listApprovals(
  db: CommonQueryMethods,
  filter: { status?: ApprovalStatus; runId?: string; limit?: number } = {},
): Promise<readonly Approval[]> {
  return db.any(sql.type(ApprovalRow)`
    SELECT ${COLUMNS} FROM approvals
     WHERE (${filter.status ?? null}::text IS NULL OR status = ${filter.status ?? null})
       AND (${filter.runId ?? null}::uuid IS NULL OR run_id = ${filter.runId ?? null}::uuid)
     ORDER BY created_at DESC LIMIT ${filter.limit ?? 100}`);
}

/**
 * Records a decision, once: only a pending approval changes, and approving or rejecting one
 * past its expiry is refused (the sweeper expires it). Locks the row, so two deciders cannot
 * both win. Returns the approval as it now is and whether this call decided it.
 */
export async function decideApprovalRow(
  db: CommonQueryMethods,
  d: { approvalId: string; decision: ApprovalDecision; decidedBy: string; via: DecidedVia },
): Promise<{ approval: Approval; decided: boolean; expired: boolean } | null> {
  const current = await db.maybeOne(sql.type(ApprovalRow.extend({ overdue: z.boolean() }))`
    SELECT ${COLUMNS}, expires_at <= now() AS overdue FROM approvals
     WHERE approval_id = ${d.approvalId} FOR UPDATE`);
  if (!current) return null;
  const { overdue, ...approval } = current;
  if (approval.status !== 'pending') return { approval, decided: false, expired: false };
  if (overdue && d.decision !== 'expired') return { approval, decided: false, expired: true };
  const updated = await db.one(sql.type(ApprovalRow)`
    UPDATE approvals SET status = ${d.decision}, decided_by = ${d.decidedBy},
           decided_via = ${d.via}, decided_at = now()
     WHERE approval_id = ${d.approvalId}
    RETURNING ${COLUMNS}`);
  return { approval: updated, decided: true, expired: false };
}
