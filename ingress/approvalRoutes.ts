import Router from '@koa/router';
import type { Context } from 'koa';
import { z } from 'zod';
import { APPROVAL_STATUSES, listApprovals } from '../db/approvals.ts';
import { withProject } from '../db/withProject.ts';
import { decideApproval, type DecideDeps } from '../pipeline/approvals/decideApproval.ts';
import { describeApproval } from '../pipeline/approvals/describeApproval.ts';
import { formatIssues } from '../pipeline/contracts/formatIssues.ts';
import { ContractViolationError, NotFoundError } from '../pipeline/errors.ts';
import { apiAuth, type ApiState } from './apiAuth.ts';
import type { AppState } from './AppState.ts';
import { parseJson, readRawBody } from './readBody.ts';

/** The query of `GET /v1/projects/:projectId/approvals`. */
export const ApprovalQuery = z.object({
  status: z.enum(APPROVAL_STATUSES).optional(),
  run: z.guid('must be a UUID').optional(),
  limit: z
    .string()
    .regex(/^[1-9]\d{0,2}$/, 'must be a whole number from 1 to 500')
    .transform(Number)
    .refine((n) => n <= 500, 'must be a whole number from 1 to 500')
    .optional(),
});

/** The body of `POST /v1/projects/:projectId/approvals/:id/approve|reject`; it may be empty. */
export const ApprovalDecisionBody = z.strictObject({
  /** The call digest the decider saw: a decision on an approval bound to another is refused. */
  callSha256: z
    .string()
    .regex(/^[0-9a-fA-F]{64}$/, 'must be 64 hex characters')
    .transform((s) => s.toLowerCase())
    .optional(),
});

/**
 * The approvals API, as the permission table says (`approvals.read`: viewer, operator,
 * approver, admin; `approvals.decide`: approver, admin; any other key is 403): list a
 * project's approvals (`?status=pending|approved|rejected|expired&run=<uuid>&limit=N`,
 * newest first), and approve or reject one (200 with the approval as it now is; decided by
 * `api:<key id>`, which must also be an approver in the project's ACL, else 403
 * `NOT_APPROVER`). A refused decision is 409 (`APPROVAL_ALREADY_DECIDED`, `APPROVAL_EXPIRED`,
 * `APPROVAL_MISMATCH`), an unknown or malformed id 404 `APPROVAL_NOT_FOUND`.
 */
export function approvalRoutes(deps: DecideDeps): Router<AppState> {
  const router = new Router<AppState>({ prefix: '/v1/projects/:projectId/approvals' });
  const read = apiAuth({ pool: deps.pool, action: 'approvals.read' });
  const decide = apiAuth({ pool: deps.pool, action: 'approvals.decide' });

  router.get<ApiState>('/', read, async (ctx) => {
    const projectId = ctx.params.projectId!;
    const parsed = ApprovalQuery.safeParse(ctx.query);
    if (!parsed.success)
      throw new ContractViolationError(formatIssues(parsed.error), undefined, {
        code: 'QUERY_INVALID',
      });
    const { status, run, limit } = parsed.data;
    const approvals = await withProject(deps.pool, projectId, (tx) =>
      listApprovals(tx, {
        ...(status ? { status } : {}),
        ...(run ? { runId: run } : {}),
        ...(limit ? { limit } : {}),
      }),
    );
    ctx.body = { approvals: approvals.map(describeApproval) };
  });

  for (const [action, decision] of [
    ['approve', 'approved'],
    ['reject', 'rejected'],
  ] as const) {
    // Harmless twice: decideApproval decides a pending approval once; a repeat is 409.
    router.post<ApiState>(`/:approvalId/${action}`, decide, async (ctx) => {
      const projectId = ctx.params.projectId!;
      const approvalId = approvalIdOf(ctx);
      const raw = await readRawBody(ctx);
      const parsed = ApprovalDecisionBody.safeParse(
        raw.toString('utf8').trim() === '' ? {} : parseJson(raw),
      );
      if (!parsed.success)
        throw new ContractViolationError(formatIssues(parsed.error), undefined, {
          code: 'BODY_INVALID',
        });
      const caller = ctx.state.apiKey;
      const approval = await decideApproval(deps, {
        projectId,
        approvalId,
        decision,
        decidedBy: `api:${caller.keyId}`,
        via: 'api',
        ...(parsed.data.callSha256 ? { expectedSha256: parsed.data.callSha256 } : {}),
      });
      ctx.body = describeApproval(approval);
    });
  }

  return router;
}

/** The `:approvalId` of the path; one that is not a UUID is as unknown as a missing one. */
function approvalIdOf(ctx: Context): string {
  const id = String((ctx.params as Record<string, string>).approvalId ?? '');
  if (!z.guid().safeParse(id).success)
    throw new NotFoundError('APPROVAL_NOT_FOUND', `no approval "${id.slice(0, 64)}"`);
  return id.toLowerCase();
}
