import { sql, type CommonQueryMethods } from 'slonik';
import { z } from 'zod';
import type { AuditAction } from '../pipeline/contracts/auditActions.ts';

/** The states of a provider endpoint's circuit breaker. */
export const BREAKER_STATES = ['closed', 'open', 'half_open'] as const;
export type BreakerState = (typeof BREAKER_STATES)[number];

const ProviderEndpoint = z.object({
  endpointId: z.number(),
  provider: z.string(),
  baseUrl: z.string(),
  state: z.enum(BREAKER_STATES),
  forced: z.boolean(),
  version: z.number(),
  stateSince: z.number(),
  retryAt: z.number().nullable(),
  failures: z.number(),
  lastError: z.string().nullable(),
  openedCount: z.number(),
  registeredBy: z.string(),
  createdAt: z.number(),
});
/** One provider endpoint (a platform resource) and its breaker, as Postgres holds it. */
export type ProviderEndpoint = z.infer<typeof ProviderEndpoint>;

const COLUMNS = sql.fragment`
  endpoint_id AS "endpointId", provider, base_url AS "baseUrl", state, forced, version,
  state_since AS "stateSince", retry_at AS "retryAt", failures, last_error AS "lastError",
  opened_count AS "openedCount", registered_by AS "registeredBy", created_at AS "createdAt"`;

/** Every known endpoint, by provider and base URL. */
export async function listProviderEndpoints(
  db: CommonQueryMethods,
): Promise<readonly ProviderEndpoint[]> {
  return db.any(sql.type(ProviderEndpoint)`
    SELECT ${COLUMNS} FROM provider_endpoints ORDER BY provider, base_url`);
}

/** One endpoint by id, or null; `lock` holds its row to the end of the transaction. */
export async function findProviderEndpointById(
  db: CommonQueryMethods,
  endpointId: number,
  { lock = false }: { lock?: boolean } = {},
): Promise<ProviderEndpoint | null> {
  return db.maybeOne(sql.type(ProviderEndpoint)`
    SELECT ${COLUMNS} FROM provider_endpoints WHERE endpoint_id = ${endpointId}
    ${lock ? sql.fragment`FOR UPDATE` : sql.fragment``}`);
}

/** One endpoint by provider and base URL, or null. */
export async function findProviderEndpoint(
  db: CommonQueryMethods,
  key: { provider: string; baseUrl: string },
): Promise<ProviderEndpoint | null> {
  return db.maybeOne(sql.type(ProviderEndpoint)`
    SELECT ${COLUMNS} FROM provider_endpoints
     WHERE provider = ${key.provider} AND base_url = ${key.baseUrl}`);
}

/**
 * Registers an endpoint (closed) with a `provider.registered` audit row, in one statement.
 * Returns null when the row exists already (registered by another process meanwhile): the
 * caller reads it. A second registration is harmless: the unique (provider, base_url) key
 * makes it insert nothing and write no audit row.
 */
export async function registerProviderEndpoint(
  db: CommonQueryMethods,
  input: { provider: string; baseUrl: string; actor: string; reason: string },
): Promise<ProviderEndpoint | null> {
  return db.maybeOne(sql.type(ProviderEndpoint)`
    WITH added AS (
      INSERT INTO provider_endpoints (provider, base_url, registered_by)
      VALUES (${input.provider}, ${input.baseUrl}, ${input.actor})
      ON CONFLICT (provider, base_url) DO NOTHING
      RETURNING ${COLUMNS}
    ), audit AS (
      INSERT INTO audit_events (project_id, chain, actor, action, subject, detail)
      SELECT 'platform', 'provider:' || a."endpointId", ${input.actor}::text, 'provider.registered',
             a.provider || ' ' || a."baseUrl", jsonb_build_object('reason', ${input.reason}::text)
        FROM added a
    )
    SELECT * FROM added`);
}

/** Where a breaker moves to. */
export type BreakerMove = {
  state: BreakerState;
  /** Held open by an operator (no probes until an operator closes it). */
  forced: boolean;
  failures: number;
  lastError: string | null;
  /** `bump` when this move opens the breaker; `reset` forgets how often it opened. */
  openedCount: 'keep' | 'bump' | 'reset';
};

/**
 * Moves an endpoint's breaker from the version the caller saw, with its audit row on the
 * platform chain `provider:<id>`, in one statement. Returns the new row, or null when the
 * row is no longer at that version: another process (or an operator) moved it first, and
 * this move is dropped, so concurrent movers write one transition between them. An open
 * breaker's `retry_at` is the database's now plus `cooldownMs` (one clock for every process).
 */
export async function moveProviderBreaker(
  db: CommonQueryMethods,
  seen: Pick<ProviderEndpoint, 'endpointId' | 'version'>,
  to: BreakerMove,
  audit: {
    actor: string;
    action: AuditAction;
    cooldownMs: number;
    detail: Record<string, unknown>;
  },
): Promise<ProviderEndpoint | null> {
  // JSON-safe (undefined dropped), as appendAudit stores a detail.
  const detail = JSON.parse(JSON.stringify(audit.detail)) as Record<string, string>;
  return db.maybeOne(sql.type(ProviderEndpoint)`
    WITH moved AS (
      UPDATE provider_endpoints
         SET state = ${to.state}::text, forced = ${to.forced}::boolean, version = version + 1,
             state_since = now(),
             retry_at = CASE WHEN ${to.state}::text = 'open' AND NOT ${to.forced}::boolean
                             THEN now() + ${audit.cooldownMs}::float8 * interval '1 millisecond' END,
             failures = ${to.failures}::integer, last_error = ${to.lastError}::text,
             opened_count = CASE ${to.openedCount}::text
                              WHEN 'bump' THEN opened_count + 1
                              WHEN 'reset' THEN 0
                              ELSE opened_count END
       WHERE endpoint_id = ${seen.endpointId} AND version = ${seen.version}
      RETURNING ${COLUMNS}
    ), audit AS (
      INSERT INTO audit_events (project_id, chain, actor, action, subject, detail)
      SELECT 'platform', 'provider:' || m."endpointId", ${audit.actor}::text, ${audit.action}::text,
             m.provider || ' ' || m."baseUrl",
             ${sql.jsonb(detail)} || jsonb_build_object('to', m.state, 'version', m.version)
        FROM moved m
    )
    SELECT * FROM moved`);
}
