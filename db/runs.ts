import { sql, type CommonQueryMethods } from 'slonik';
import { z } from 'zod';
import { Attachment, type ConversationEvent } from '../pipeline/contracts/conversationEvent.ts';
import { RUN_STATES, type RunState } from '../pipeline/contracts/runState.ts';
import type { ErrorCode } from '../pipeline/errors.ts';

// Row schemas built once at load: zod compiles a schema on first use, so one built per
// call was paid on every query.
const RunIdRow = z.object({ runId: z.string() });
const ExistingEventRow = z.object({ runId: z.string(), requestHash: z.string().nullable() });
const AuditIdRow = z.object({ auditId: z.number() });
const BlockerRow = z.object({
  runId: z.string(),
  awaitingApproval: z.boolean(),
  deadlineAt: z.number(),
});
const HistoryRow = z.object({
  input: z.string().nullable(),
  output: z.string().nullable(),
  // Events stored before attachments existed have none.
  attachments: z.array(Attachment).nullable(),
});

const RunRow = z.object({
  runId: z.string(),
  runSeq: z.number(),
  projectId: z.string(),
  eventId: z.string(),
  traceId: z.string(),
  channel: z.string(),
  accountId: z.string(),
  conversationKey: z.string(),
  state: z.enum(RUN_STATES),
  agent: z.string().nullable(),
  sessionKey: z.string().nullable(),
  pinned: z.record(z.string(), z.string()),
  mode: z.string().nullable(),
  live: z.boolean().nullable(),
  policy: z.unknown(),
  output: z.unknown(),
  failureCode: z.string().nullable(),
  failureMessage: z.string().nullable(),
  failureDetail: z.unknown(),
  executingAt: z.number().nullable(),
  deadlineAt: z.number(),
  createdAt: z.number(),
  updatedAt: z.number(),
  completedAt: z.number().nullable(),
  /** When the run's message text was removed (storeTranscripts false, retention); else null. */
  textRemovedAt: z.number().nullable(),
});
/** A run as the stages see it. */
export type Run = z.infer<typeof RunRow>;
const RunWithEventRow = RunRow.extend({ eventBody: z.unknown() });

const COLUMNS = sql.fragment`
  run_id AS "runId", run_seq AS "runSeq", project_id AS "projectId", event_id AS "eventId",
  trace_id AS "traceId", channel, account_id AS "accountId", conversation_key AS "conversationKey",
  state, agent, session_key AS "sessionKey", pinned, mode, live, policy, output,
  failure_code AS "failureCode", failure_message AS "failureMessage",
  failure_detail AS "failureDetail", executing_at AS "executingAt", deadline_at AS "deadlineAt",
  created_at AS "createdAt", updated_at AS "updatedAt", completed_at AS "completedAt",
  text_removed_at AS "textRemovedAt"`;

/**
 * The ordering domain of a conversation: channel, account, dm|group, id and thread. Known at
 * ingress, before any contract is read, so arrival order can be kept from the first moment.
 */
export function conversationKey(event: ConversationEvent): string {
  const c = event.conversation;
  return [event.channel, event.accountId, c.kind, c.id, ...(c.threadId ? [c.threadId] : [])].join(
    '/',
  );
}

/** The advisory-lock key of one conversation of one project. */
function conversationLockKey(projectId: string, key: string) {
  return sql.fragment`hashtextextended(${`${projectId}/${key}`}, 0)`;
}

/** What {@link acceptEvent} found: the run, whether this call made it, the stored request hash. */
export type AcceptedEvent = { runId: string; created: boolean; requestHash: string | null };

/**
 * Records an inbound event and, only if the event is new, its run (`RECEIVED`) with the first
 * transition and audit row — one statement. A retried or concurrent duplicate finds the
 * event's unique key taken and gets the existing run back with `created: false`, and the
 * request hash the first copy stored (so the caller can refuse a reused key with another body).
 */
export async function acceptEvent(
  db: CommonQueryMethods,
  event: ConversationEvent,
  {
    runId,
    runTimeoutMs,
    requestHash = null,
  }: { runId: string; runTimeoutMs: number; requestHash?: string | null },
): Promise<AcceptedEvent> {
  // The conversation's lock (the one execute claims under) orders run_seq by commit: without
  // it a later message could commit first and be answered before an earlier one. Taken in
  // the same statement, before the rows are made: the inserts read from `lock`, so run_seq is
  // drawn only once the lock is held, and the lock lasts to the caller's commit.
  const created = await db.maybeOne(sql.type(RunIdRow)`
    WITH lock AS MATERIALIZED (
      SELECT pg_advisory_xact_lock(${conversationLockKey(event.projectId, conversationKey(event))})
    ), ev AS (
      INSERT INTO conversation_events
        (event_id, project_id, channel, account_id, external_event_id, trace_id, body,
         request_hash, received_at)
      SELECT ${event.eventId}::uuid, ${event.projectId}, ${event.channel}, ${event.accountId},
             ${event.externalEventId}, ${event.traceId}, ${sql.jsonb(event)}, ${requestHash},
             ${event.receivedAt}::timestamptz
        FROM lock
      -- either unique key: (project, channel, account, id), or (project, id) of the API channel
      ON CONFLICT DO NOTHING
      RETURNING event_id, received_at
    ), run AS (
      INSERT INTO runs (run_id, project_id, event_id, trace_id, channel, account_id,
                        conversation_key, api_key_id, deadline_at)
      SELECT ${runId}, ${event.projectId}, event_id, ${event.traceId}, ${event.channel},
             ${event.accountId}, ${conversationKey(event)}, ${event.apiKeyId ?? null},
             received_at + make_interval(secs => ${runTimeoutMs / 1000})
        FROM ev
      RETURNING run_id, project_id, trace_id, created_at
    ), tr AS (
      INSERT INTO run_transitions (project_id, run_id, trace_id, stage, from_state, to_state, started_at)
      SELECT project_id, run_id, trace_id, 'ingress', NULL, 'RECEIVED', created_at FROM run
    )
    INSERT INTO audit_events (project_id, chain, actor, action, subject, detail, trace_id, run_id)
    SELECT project_id, 'run:' || run_id, ${`channel:${event.channel}:${event.accountId}`},
           'run.received', 'run:' || run_id,
           ${sql.jsonb({ event_id: event.eventId, external_event_id: event.externalEventId })},
           trace_id, run_id
      FROM run
    RETURNING run_id AS "runId"`);
  if (created) return { runId: created.runId, created: true, requestHash };
  // A new statement sees the twin that won the unique key, now committed.
  const existing = await db.one(sql.type(ExistingEventRow)`
    SELECT r.run_id AS "runId", e.request_hash AS "requestHash"
      FROM conversation_events e JOIN runs r USING (event_id)
     WHERE e.project_id = ${event.projectId} AND e.channel = ${event.channel}
       AND (e.channel = 'api' OR e.account_id = ${event.accountId})
       AND e.external_event_id = ${event.externalEventId}`);
  return { ...existing, created: false };
}

/** One run, or null (also when it belongs to another project: row-level security). */
export async function getRun(db: CommonQueryMethods, runId: string): Promise<Run | null> {
  return db.maybeOne(sql.type(RunRow)`SELECT ${COLUMNS} FROM runs WHERE run_id = ${runId}`);
}

/**
 * One run and the body of the inbound event it answers, in one query (the stages that need
 * both would otherwise pay a second round trip), or null.
 */
export async function getRunWithEvent(
  db: CommonQueryMethods,
  runId: string,
): Promise<{ run: Run; eventBody: unknown } | null> {
  const row = await db.maybeOne(sql.type(RunWithEventRow)`
    SELECT ${COLUMNS}, (SELECT body FROM conversation_events e WHERE e.event_id = runs.event_id) AS "eventBody"
      FROM runs WHERE run_id = ${runId}`);
  if (!row) return null;
  const { eventBody, ...run } = row;
  return { run, eventBody };
}

/** What a transition may set on the run besides its state. */
export type RunChanges = {
  agent?: string;
  sessionKey?: string;
  pinned?: Record<string, string>;
  mode?: string;
  live?: boolean;
  policy?: unknown;
  output?: unknown;
  failure?: { code: ErrorCode; message: string; detail?: Record<string, unknown> };
  deadlineAt?: number;
};

/**
 * Moves a run from `from` to `to` with its transition row and audit row, in one statement.
 * Returns false when the run was no longer in `from` — another worker (or an earlier attempt
 * of this job) already moved it — so a repeated stage changes nothing.
 */
export async function transitionRun(
  db: CommonQueryMethods,
  t: {
    runId: string;
    from: RunState | readonly RunState[];
    to: RunState;
    stage: string;
    actor: string;
    startedAt: number;
    changes?: RunChanges;
    detail?: Record<string, unknown>;
  },
): Promise<boolean> {
  const c = t.changes ?? {};
  const from: readonly RunState[] = typeof t.from === 'string' ? [t.from] : t.from;
  const jsonb = (v: unknown) => (v === undefined ? null : sql.jsonb(v));
  const terminal = t.to === 'COMPLETED' || t.to === 'FAILED';
  const row = await db.maybeOne(sql.type(AuditIdRow)`
    WITH up AS (
      UPDATE runs SET
        state = ${t.to},
        agent = coalesce(${c.agent ?? null}, agent),
        session_key = coalesce(${c.sessionKey ?? null}, session_key),
        pinned = coalesce(${jsonb(c.pinned)}::jsonb, pinned),
        mode = coalesce(${c.mode ?? null}, mode),
        live = coalesce(${c.live ?? null}::boolean, live),
        policy = coalesce(${jsonb(c.policy)}::jsonb, policy),
        output = coalesce(${jsonb(c.output)}::jsonb, output),
        failure_code = ${c.failure?.code ?? null},
        failure_message = ${c.failure?.message ?? null},
        failure_detail = ${jsonb(c.failure?.detail)}::jsonb,
        deadline_at = coalesce(to_timestamp(${c.deadlineAt ?? null}::float8 / 1000), deadline_at),
        completed_at = CASE WHEN ${terminal} THEN now() END,
        updated_at = now()
      WHERE run_id = ${t.runId} AND state = ANY(${sql.array(from, 'text')})
      RETURNING run_id, project_id, trace_id, ${from.length === 1 ? from[0]! : null}::text AS from_state
    ), tr AS (
      INSERT INTO run_transitions (project_id, run_id, trace_id, stage, from_state, to_state, started_at, detail)
      SELECT project_id, run_id, trace_id, ${t.stage}, from_state, ${t.to},
             to_timestamp(${t.startedAt}::float8 / 1000), ${sql.jsonb((t.detail ?? {}) as never)}
        FROM up
    )
    INSERT INTO audit_events (project_id, chain, actor, action, subject, detail, trace_id, run_id)
    SELECT project_id, 'run:' || run_id, ${t.actor}, ${`run.${t.to.toLowerCase()}`}, 'run:' || run_id,
           ${sql.jsonb({ stage: t.stage, ...(c.failure ? { failure_code: c.failure.code } : {}), ...(t.detail ?? {}) })},
           trace_id, run_id
      FROM up
    RETURNING audit_id AS "auditId"`);
  return row !== null;
}

/**
 * Brings a `FAILED` run back to `to`, the state it failed in, for `awooop runs retry`: the
 * failure is cleared (kept in the transitions and the audit), the run gets a fresh deadline as
 * long as its first one was, and a run brought back to execute has to claim execution again.
 * Returns false when the run was no longer failed (a concurrent retry won).
 */
export async function reviveRun(
  db: CommonQueryMethods,
  run: Pick<Run, 'runId' | 'createdAt' | 'deadlineAt'>,
  { to, actor, detail }: { to: RunState; actor: string; detail: Record<string, unknown> },
): Promise<boolean> {
  const now = Date.now();
  const moved = await transitionRun(db, {
    runId: run.runId,
    from: 'FAILED',
    to,
    stage: 'retry',
    actor,
    startedAt: now,
    changes: { deadlineAt: now + Math.max(0, run.deadlineAt - run.createdAt) },
    detail,
  });
  if (moved) {
    await db.query(sql.unsafe`
      UPDATE runs SET executing_at = NULL WHERE run_id = ${run.runId} AND state = ${to}`);
  }
  return moved;
}

/**
 * Claims the right to execute a run of a conversation. Holds a transaction-scoped advisory
 * lock on the conversation, so two claims cannot both pass; refuses while an earlier run of
 * the conversation is unfinished or another run of it is executing. Returns the run that
 * blocks (and whether it waits for an approval), or null once claimed. Claiming again (a
 * retried job) finds its own claim and passes.
 */
export async function claimExecution(
  db: CommonQueryMethods,
  run: Pick<Run, 'runId' | 'runSeq' | 'projectId' | 'conversationKey'>,
): Promise<{ blockedBy: string; awaitingApproval: boolean } | null> {
  await db.query(sql.unsafe`
    SELECT pg_advisory_xact_lock(${conversationLockKey(run.projectId, run.conversationKey)})`);
  const blocker = await db.maybeOne(sql.type(BlockerRow)`
    SELECT run_id AS "runId", state = 'WAITING_APPROVAL' AS "awaitingApproval", deadline_at AS "deadlineAt"
      FROM runs
     WHERE project_id = ${run.projectId} AND conversation_key = ${run.conversationKey}
       AND state NOT IN ('COMPLETED', 'FAILED') AND run_id <> ${run.runId}
       AND (run_seq < ${run.runSeq} OR (state = 'ADMITTED' AND executing_at IS NOT NULL))
     ORDER BY run_seq LIMIT 1`);
  if (blocker) {
    // Behind a run that waits for a human, this one waits as long: its deadline moves to the
    // blocker's, so a follow-up is answered in order after the decision, not timed out.
    if (blocker.awaitingApproval) {
      await db.query(sql.unsafe`
        UPDATE runs SET deadline_at = greatest(deadline_at, to_timestamp(${blocker.deadlineAt}::float8 / 1000))
         WHERE run_id = ${run.runId}`);
    }
    return { blockedBy: blocker.runId, awaitingApproval: blocker.awaitingApproval };
  }
  await db.query(sql.unsafe`
    UPDATE runs SET executing_at = coalesce(executing_at, now()), updated_at = now()
     WHERE run_id = ${run.runId} AND state = 'ADMITTED'`);
  return null;
}

/** The completed runs of a session before `beforeSeq`, newest first: the history a prompt carries. */
export async function sessionHistory(
  db: CommonQueryMethods,
  {
    projectId,
    sessionKey,
    beforeSeq,
    limit,
  }: {
    projectId: string;
    sessionKey: string;
    beforeSeq: number;
    limit: number;
  },
): Promise<readonly { input: string; output: string; attachments: readonly Attachment[] }[]> {
  if (limit <= 0) return [];
  const rows = await db.any(sql.type(HistoryRow)`
    SELECT e.body #>> '{message,text}' AS input, r.output ->> 'text' AS output,
           e.body #> '{message,attachments}' AS attachments
      FROM runs r JOIN conversation_events e USING (event_id)
     WHERE r.project_id = ${projectId} AND r.session_key = ${sessionKey}
       AND r.state = 'COMPLETED' AND r.run_seq < ${beforeSeq} AND r.text_removed_at IS NULL
       AND r.policy ->> 'storeTranscripts' IS DISTINCT FROM 'false'
     ORDER BY r.run_seq DESC LIMIT ${limit}`);
  return rows.flatMap((r) =>
    r.input !== null && r.output !== null
      ? [{ input: r.input, output: r.output, attachments: r.attachments ?? [] }]
      : [],
  );
}

/**
 * Whether any of the session's completed runs that {@link sessionHistory} would return (the
 * same window) read a tool result: their answers may carry untrusted content into this run.
 */
export async function historyTainted(
  db: CommonQueryMethods,
  {
    projectId,
    sessionKey,
    beforeSeq,
    limit,
  }: { projectId: string; sessionKey: string; beforeSeq: number; limit: number },
): Promise<boolean> {
  if (limit <= 0) return false;
  const row = await db.one(sql.type(z.object({ tainted: z.boolean() }))`
    SELECT EXISTS (
      SELECT 1 FROM (
        SELECT run_id FROM runs
         WHERE project_id = ${projectId} AND session_key = ${sessionKey}
           AND state = 'COMPLETED' AND run_seq < ${beforeSeq} AND text_removed_at IS NULL
           AND policy ->> 'storeTranscripts' IS DISTINCT FROM 'false'
         ORDER BY run_seq DESC LIMIT ${limit}
      ) h JOIN run_steps s USING (run_id)
       WHERE s.kind = 'tool' AND (s.body ->> 'untrusted')::boolean
    ) AS tainted`);
  return row.tainted;
}

const Transition = z.object({
  stage: z.string(),
  fromState: z.string().nullable(),
  toState: z.string(),
  startedAt: z.number(),
  at: z.number(),
  detail: z.unknown(),
});
export type RunTransition = z.infer<typeof Transition>;

/** A run's transitions, oldest first: its timeline. */
export async function listTransitions(
  db: CommonQueryMethods,
  runId: string,
): Promise<readonly RunTransition[]> {
  return db.any(sql.type(Transition)`
    SELECT stage, from_state AS "fromState", to_state AS "toState", started_at AS "startedAt", at, detail
      FROM run_transitions WHERE run_id = ${runId} ORDER BY transition_id`);
}

/** Runs visible to this transaction, newest first. */
export async function listRuns(
  db: CommonQueryMethods,
  { state, limit = 50 }: { state?: RunState; limit?: number } = {},
): Promise<readonly Run[]> {
  return db.any(sql.type(RunRow)`
    SELECT ${COLUMNS} FROM runs
     WHERE (${state ?? null}::text IS NULL OR state = ${state ?? null})
     ORDER BY created_at DESC, run_seq DESC LIMIT ${limit}`);
}
