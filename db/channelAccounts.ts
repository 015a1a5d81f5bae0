import { sql, type CommonQueryMethods } from 'slonik';
import { z } from 'zod';

/** What an operator asks of an account. */
export const DESIRED_STATES = ['running', 'stopped'] as const;
export type DesiredState = (typeof DESIRED_STATES)[number];

/** What the channels process last reported for an account. */
export const ACTUAL_STATES = ['starting', 'running', 'reconnecting', 'stopped', 'error'] as const;
export type ActualState = (typeof ACTUAL_STATES)[number];

const ChannelAccountRow = z.object({
  projectId: z.string(),
  accountId: z.string(),
  channel: z.string(),
  desiredState: z.enum(DESIRED_STATES),
  desiredBy: z.string().nullable(),
  desiredAt: z.number().nullable(),
  restartSeq: z.number(),
  actualState: z.enum(ACTUAL_STATES),
  stateChangedAt: z.number(),
  revisionId: z.string().nullable(),
  revisionVersion: z.number().nullable(),
  contractActive: z.boolean(),
  registeredUrl: z.string().nullable(),
  registeredAt: z.number().nullable(),
  lastInboundAt: z.number().nullable(),
  lastOutboundAt: z.number().nullable(),
  lastErrorCode: z.string().nullable(),
  lastErrorMessage: z.string().nullable(),
  lastErrorAt: z.number().nullable(),
  inboundCount: z.number(),
  outboundCount: z.number(),
  errorCount: z.number(),
});
/** One account's status snapshot. */
export type ChannelAccountRow = z.infer<typeof ChannelAccountRow>;

const COLUMNS = sql.fragment`
  project_id AS "projectId", account_id AS "accountId", channel,
  desired_state AS "desiredState", desired_by AS "desiredBy", desired_at AS "desiredAt",
  restart_seq AS "restartSeq", actual_state AS "actualState",
  state_changed_at AS "stateChangedAt", revision_id AS "revisionId",
  revision_version AS "revisionVersion", contract_active AS "contractActive",
  registered_url AS "registeredUrl", registered_at AS "registeredAt",
  last_inbound_at AS "lastInboundAt", last_outbound_at AS "lastOutboundAt",
  last_error_code AS "lastErrorCode", last_error_message AS "lastErrorMessage",
  last_error_at AS "lastErrorAt", inbound_count AS "inboundCount",
  outbound_count AS "outboundCount", error_count AS "errorCount"`;

const Transition = z.object({
  transitionId: z.number(),
  kind: z.enum(['actual', 'desired', 'restart']),
  fromState: z.string().nullable(),
  toState: z.string(),
  revisionId: z.string().nullable(),
  reason: z.string(),
  actor: z.string(),
  detail: z.record(z.string(), z.unknown()),
  at: z.number(),
});
/** One change in an account's history. */
export type ChannelAccountTransition = z.infer<typeof Transition>;

const ActiveChannel = z.object({
  projectId: z.string(),
  accountId: z.string(),
  revisionId: z.string(),
});
const KnownAccount = z.object({
  projectId: z.string(),
  accountId: z.string(),
  desiredState: z.enum(DESIRED_STATES),
  restartSeq: z.number(),
  actualState: z.enum(ACTUAL_STATES),
  contractActive: z.boolean(),
});

/**
 * The manager's scan (inside `withSweeper`): every active channel contract of every project
 * (ids only) and every account snapshot there is.
 */
export async function scanChannelAccounts(db: CommonQueryMethods): Promise<{
  active: readonly z.infer<typeof ActiveChannel>[];
  known: readonly z.infer<typeof KnownAccount>[];
}> {
  const active = await db.any(sql.type(ActiveChannel)`
    SELECT project_id AS "projectId", name AS "accountId", revision_id AS "revisionId"
      FROM contract_active WHERE kind = 'channel' ORDER BY 1, 2`);
  const known = await db.any(sql.type(KnownAccount)`
    SELECT project_id AS "projectId", account_id AS "accountId", desired_state AS "desiredState",
           restart_seq AS "restartSeq", actual_state AS "actualState",
           contract_active AS "contractActive"
      FROM channel_accounts ORDER BY 1, 2`);
  return { active, known };
}

/**
 * Creates the account's snapshot if it has none, and records the contract revision it is to
 * run. Harmless twice: keyed on (project, account); a second call only sets the same values.
 */
export async function ensureChannelAccount(
  db: CommonQueryMethods,
  a: {
    projectId: string;
    accountId: string;
    channel: string;
    revisionId: string;
    revisionVersion: number;
  },
): Promise<ChannelAccountRow> {
  return db.one(sql.type(ChannelAccountRow)`
    INSERT INTO channel_accounts (project_id, account_id, channel, revision_id, revision_version)
    VALUES (${a.projectId}, ${a.accountId}, ${a.channel}, ${a.revisionId}, ${a.revisionVersion})
    ON CONFLICT (project_id, account_id) DO UPDATE
       SET channel = EXCLUDED.channel, revision_id = EXCLUDED.revision_id,
           revision_version = EXCLUDED.revision_version, contract_active = true,
           updated_at = CASE WHEN channel_accounts.revision_id IS DISTINCT FROM EXCLUDED.revision_id
                               OR NOT channel_accounts.contract_active
                             THEN now() ELSE channel_accounts.updated_at END
    RETURNING ${COLUMNS}`);
}

/** The version of a channel contract's revision (for the snapshot). */
export async function revisionVersion(
  db: CommonQueryMethods,
  revisionId: string,
): Promise<number | null> {
  return db.maybeOneFirst(sql.type(z.object({ version: z.number() }))`
    SELECT version FROM contract_revisions WHERE revision_id = ${revisionId}`);
}

/** The channel type of a channel contract revision. */
export async function channelTypeOf(
  db: CommonQueryMethods,
  revisionId: string,
): Promise<string | null> {
  return db.maybeOneFirst(sql.type(z.object({ t: z.string() }))`
    SELECT body->>'type' AS t FROM contract_revisions WHERE revision_id = ${revisionId}`);
}

/**
 * Moves the account's actual state to `to` and records the change in its history, only when
 * it is a change: harmless twice (a second report of the same state writes nothing). With
 * `error`, the last error and the error count are set too, even when the state stays.
 * Returns whether the state moved.
 */
export async function setActualState(
  db: CommonQueryMethods,
  s: {
    projectId: string;
    accountId: string;
    to: ActualState;
    reason: string;
    actor: string;
    error?: { code: string; message: string } | undefined;
    /** The contract is gone: the snapshot keeps its last revision but says so. */
    contractGone?: boolean;
  },
): Promise<boolean> {
  const error = s.error ?? null;
  const gone = s.contractGone ?? false;
  const old = await db.maybeOne(sql.type(
    z.object({
      actualState: z.string(),
      revisionId: z.string().nullable(),
      contractActive: z.boolean(),
    }),
  )`
    SELECT actual_state AS "actualState", revision_id AS "revisionId", contract_active AS "contractActive"
      FROM channel_accounts
     WHERE project_id = ${s.projectId} AND account_id = ${s.accountId} FOR UPDATE`);
  if (!old) return false;
  const moved = old.actualState !== s.to;
  if (!moved && error === null && !(gone && old.contractActive)) return false;
  await db.query(sql.unsafe`
    UPDATE channel_accounts
       SET actual_state = ${s.to},
           state_changed_at = CASE WHEN ${moved} THEN now() ELSE state_changed_at END,
           contract_active = contract_active AND NOT ${gone},
           last_error_code = coalesce(${error?.code ?? null}, last_error_code),
           last_error_message = coalesce(${error?.message.slice(0, 500) ?? null}, last_error_message),
           last_error_at = CASE WHEN ${error !== null} THEN now() ELSE last_error_at END,
           error_count = error_count + ${error === null ? 0 : 1},
           updated_at = now()
     WHERE project_id = ${s.projectId} AND account_id = ${s.accountId}`);
  if (!moved) return false;
  const detail = error ? { code: error.code, message: error.message.slice(0, 500) } : {};
  await db.query(sql.unsafe`
    INSERT INTO channel_account_transitions
      (project_id, account_id, kind, from_state, to_state, revision_id, reason, actor, detail)
    VALUES (${s.projectId}, ${s.accountId}, 'actual', ${old.actualState}, ${s.to}, ${old.revisionId},
            ${s.reason}, ${s.actor}, ${JSON.stringify(detail)}::jsonb)`);
  return true;
}

/**
 * Sets what the operator wants of the account, creating its snapshot when the manager has not
 * yet. Harmless twice: a request for the state it already has changes nothing and returns
 * false.
 */
export async function requestDesiredState(
  db: CommonQueryMethods,
  r: {
    projectId: string;
    accountId: string;
    channel: string;
    desired: DesiredState;
    actor: string;
  },
): Promise<boolean> {
  await db.query(sql.unsafe`
    INSERT INTO channel_accounts (project_id, account_id, channel)
    VALUES (${r.projectId}, ${r.accountId}, ${r.channel})
    ON CONFLICT (project_id, account_id) DO NOTHING`);
  const changed = await db.maybeOneFirst(sql.type(z.object({ changed: z.boolean() }))`
    UPDATE channel_accounts
       SET desired_state = ${r.desired}, desired_by = ${r.actor}, desired_at = now(), updated_at = now()
     WHERE project_id = ${r.projectId} AND account_id = ${r.accountId}
       AND desired_state <> ${r.desired}
    RETURNING true AS changed`);
  if (!changed) return false;
  await db.query(sql.unsafe`
    INSERT INTO channel_account_transitions
      (project_id, account_id, kind, from_state, to_state, reason, actor)
    VALUES (${r.projectId}, ${r.accountId}, 'desired', ${r.desired === 'running' ? 'stopped' : 'running'},
            ${r.desired}, ${r.desired === 'running' ? 'start requested' : 'stop requested'}, ${r.actor})`);
  return true;
}

/**
 * Asks for the account to be reopened (its connection closed and opened again, its
 * registration repeated). Each call is a new request: a second restart restarts again.
 */
export async function requestRestart(
  db: CommonQueryMethods,
  r: { projectId: string; accountId: string; channel: string; actor: string },
): Promise<void> {
  await db.query(sql.unsafe`
    INSERT INTO channel_accounts (project_id, account_id, channel)
    VALUES (${r.projectId}, ${r.accountId}, ${r.channel})
    ON CONFLICT (project_id, account_id) DO NOTHING`);
  await db.query(sql.unsafe`
    UPDATE channel_accounts SET restart_seq = restart_seq + 1, updated_at = now()
     WHERE project_id = ${r.projectId} AND account_id = ${r.accountId}`);
  await db.query(sql.unsafe`
    INSERT INTO channel_account_transitions
      (project_id, account_id, kind, from_state, to_state, reason, actor)
    VALUES (${r.projectId}, ${r.accountId}, 'restart', NULL, 'running', 'restart requested', ${r.actor})`);
}

/** Records that the platform registered the account with its channel (a webhook URL). */
export async function recordRegistration(
  db: CommonQueryMethods,
  r: { projectId: string; accountId: string; url: string },
): Promise<void> {
  await db.query(sql.unsafe`
    UPDATE channel_accounts SET registered_url = ${r.url}, registered_at = now(), updated_at = now()
     WHERE project_id = ${r.projectId} AND account_id = ${r.accountId}`);
}

/**
 * Adds counts and last times flushed from Redis. Each flush adds what it took out of Redis,
 * so a flush is applied once (its Redis side is read and cleared atomically before this).
 */
export async function addAccountStats(
  db: CommonQueryMethods,
  s: {
    projectId: string;
    accountId: string;
    inbound: number;
    outbound: number;
    errors: number;
    lastInboundAt: number | null;
    lastOutboundAt: number | null;
    lastError: { code: string; at: number } | null;
  },
): Promise<void> {
  const ts = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());
  await db.query(sql.unsafe`
    UPDATE channel_accounts
       SET inbound_count = inbound_count + ${s.inbound},
           outbound_count = outbound_count + ${s.outbound},
           error_count = error_count + ${s.errors},
           last_inbound_at = greatest(last_inbound_at, ${ts(s.lastInboundAt)}::timestamptz),
           last_outbound_at = greatest(last_outbound_at, ${ts(s.lastOutboundAt)}::timestamptz),
           last_error_code = CASE WHEN ${s.lastError?.code ?? null}::text IS NOT NULL
                                   AND (last_error_at IS NULL OR last_error_at < ${ts(s.lastError?.at ?? null)}::timestamptz)
                                  THEN ${s.lastError?.code ?? null} ELSE last_error_code END,
           last_error_message = CASE WHEN ${s.lastError?.code ?? null}::text IS NOT NULL
                                   AND (last_error_at IS NULL OR last_error_at < ${ts(s.lastError?.at ?? null)}::timestamptz)
                                  THEN 'a send failed' ELSE last_error_message END,
           last_error_at = greatest(last_error_at, ${ts(s.lastError?.at ?? null)}::timestamptz),
           updated_at = now()
     WHERE project_id = ${s.projectId} AND account_id = ${s.accountId}`);
}

/** The project's account snapshots (the tenant's own, under row-level security). */
export async function listChannelAccounts(
  db: CommonQueryMethods,
): Promise<readonly ChannelAccountRow[]> {
  return db.any(sql.type(ChannelAccountRow)`
    SELECT ${COLUMNS} FROM channel_accounts ORDER BY account_id`);
}

/** One account's snapshot, or null. */
export async function getChannelAccount(
  db: CommonQueryMethods,
  accountId: string,
): Promise<ChannelAccountRow | null> {
  return db.maybeOne(sql.type(ChannelAccountRow)`
    SELECT ${COLUMNS} FROM channel_accounts WHERE account_id = ${accountId}`);
}

/** The account's operator-set state; `running` for an account with no snapshot yet. */
export async function readDesiredState(
  db: CommonQueryMethods,
  accountId: string,
): Promise<DesiredState> {
  const state = await db.maybeOneFirst(sql.type(z.object({ s: z.enum(DESIRED_STATES) }))`
    SELECT desired_state AS s FROM channel_accounts WHERE account_id = ${accountId}`);
  return state ?? 'running';
}

/** The newest `limit` changes of one account, oldest first. */
export async function listAccountTransitions(
  db: CommonQueryMethods,
  accountId: string,
  limit = 50,
): Promise<readonly ChannelAccountTransition[]> {
  return db.any(sql.type(Transition)`
    SELECT * FROM (
      SELECT transition_id AS "transitionId", kind, from_state AS "fromState", to_state AS "toState",
             revision_id AS "revisionId", reason, actor, detail, at
        FROM channel_account_transitions WHERE account_id = ${accountId}
       ORDER BY transition_id DESC LIMIT ${limit}) t
     ORDER BY "transitionId"`);
}

/**
 * Gives each run of the account still waiting to be delivered as long again as it was first
 * given, so a wait the operator imposed (the account stopped) does not time it out. Returns
 * the runs, for their deliveries to be resumed.
 */
export async function extendWaitingRuns(
  db: CommonQueryMethods,
  accountId: string,
): Promise<readonly { runId: string; traceId: string; failed: boolean }[]> {
  return db.any(sql.type(z.object({ runId: z.string(), traceId: z.string(), failed: z.boolean() }))`
    UPDATE runs r
       SET deadline_at = greatest(r.deadline_at, now() + (r.deadline_at - r.created_at))
     WHERE r.account_id = ${accountId}
       AND r.state IN ('SANITIZED', 'FAILED')
       AND EXISTS (SELECT 1 FROM outbound_messages o
                    WHERE o.run_id = r.run_id AND o.status = 'queued')
    RETURNING r.run_id AS "runId", r.trace_id AS "traceId", r.state = 'FAILED' AS failed`);
}
