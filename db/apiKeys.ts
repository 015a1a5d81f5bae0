import { createHash, randomBytes } from 'node:crypto';
import { sql, type CommonQueryMethods } from 'slonik';
import { z } from 'zod';
import { ROLES } from '../pipeline/contracts/roles.ts';
import { ContractViolationError } from '../pipeline/errors.ts';

/**
 * The roles an API key may hold (every role: {@link ROLES}); what each grants is the
 * permission table in `pipeline/control/permissions.ts`. An `mcp` key has only that role and
 * is bound to one agent.
 */
export const API_KEY_ROLES = ROLES;

// Row schemas built once at load: zod compiles a schema on first use, so one built per
// call was paid on every query.
const KeyIdRow = z.object({ keyId: z.string() });
const FoundKeyRow = z.object({
  keyId: z.string(),
  name: z.string(),
  roles: z.array(z.enum(API_KEY_ROLES)),
  agent: z.string().nullable(),
});
const KeyListRow = z.object({
  keyId: z.string(),
  name: z.string(),
  keyPrefix: z.string(),
  roles: z.array(z.string()),
  agent: z.string().nullable(),
  createdAt: z.number(),
  revokedAt: z.number().nullable(),
});
const RunIdRow = z.object({ runId: z.string() });

export type ApiKeyRole = (typeof API_KEY_ROLES)[number];

/** How many of a key's random characters its stored prefix keeps: enough to tell keys apart, too few to matter. */
export const KEY_PREFIX_RANDOM_CHARS = 4;

/**
 * The part of a key that is stored and shown in clear: the fixed `awk_<project>_` and the first
 * {@link KEY_PREFIX_RANDOM_CHARS} random characters, so always `project.length + 9` long. It is
 * cut by length, not at the last `_`: base64url has `_` in it, and cutting there kept up to the
 * whole key.
 */
export function apiKeyPrefix(projectId: string, key: string): string {
  return key.slice(0, `awk_${projectId}_`.length + KEY_PREFIX_RANDOM_CHARS);
}

/** SHA-256 hex of a presented key: the only form a key is stored or compared in. */
export function hashApiKey(key: string): string {
  return createHash('sha256').update(key).digest('hex');
}

/**
 * Creates a key for a project and returns it once; only its hash is kept. Keys look like
 * `awk_<project>_<43 random base64url chars>` so a leaked one is recognisable; only
 * {@link apiKeyPrefix} of it is kept in clear. An `mcp` key
 * has that role alone and names its `agent`; no other key names one.
 */
export async function createApiKey(
  db: CommonQueryMethods,
  k: {
    projectId: string;
    name: string;
    roles: readonly ApiKeyRole[];
    actor: string;
    /** The agent an `mcp` key opens the endpoint of; required for it, refused for others. */
    agent?: string | undefined;
  },
): Promise<{ keyId: string; key: string }> {
  const mcp = k.roles.includes('mcp');
  if (mcp && (k.roles.length !== 1 || !k.agent)) {
    throw new ContractViolationError(
      [k.agent ? 'roles: an mcp key has no other role' : 'agent: required for an mcp key'],
      undefined,
      { code: 'API_KEY_INVALID' },
    );
  }
  if (!mcp && k.agent !== undefined) {
    throw new ContractViolationError(['agent: only an mcp key is bound to an agent'], undefined, {
      code: 'API_KEY_INVALID',
    });
  }
  const key = `awk_${k.projectId}_${randomBytes(32).toString('base64url')}`;
  const row = await db.one(sql.type(KeyIdRow)`
    INSERT INTO api_keys (project_id, name, key_hash, key_prefix, roles, agent, created_by)
    VALUES (${k.projectId}, ${k.name}, ${hashApiKey(key)}, ${apiKeyPrefix(k.projectId, key)},
            ${sql.array([...k.roles], 'text')}, ${k.agent ?? null}, ${k.actor})
    RETURNING key_id AS "keyId"`);
  return { keyId: row.keyId, key };
}

/** The live key of this project whose hash matches (with the agent an `mcp` key is bound to), or null. */
export async function findApiKey(db: CommonQueryMethods, projectId: string, key: string) {
  return db.maybeOne(sql.type(FoundKeyRow)`
    SELECT key_id AS "keyId", name, roles, agent FROM api_keys
     WHERE project_id = ${projectId} AND key_hash = ${hashApiKey(key)} AND revoked_at IS NULL`);
}

/** A project's keys, without their hashes. */
export async function listApiKeys(db: CommonQueryMethods, projectId: string) {
  return db.any(sql.type(KeyListRow)`
    SELECT key_id AS "keyId", name, key_prefix AS "keyPrefix", roles, agent, created_at AS "createdAt",
           revoked_at AS "revokedAt"
      FROM api_keys WHERE project_id = ${projectId} ORDER BY created_at`);
}

/** Revokes a key; returns whether a live key was revoked. */
export async function revokeApiKey(db: CommonQueryMethods, projectId: string, keyId: string) {
  const row = await db.maybeOne(sql.type(KeyIdRow)`
    UPDATE api_keys SET revoked_at = now()
     WHERE project_id = ${projectId} AND key_id = ${keyId} AND revoked_at IS NULL
    RETURNING key_id AS "keyId"`);
  return row !== null;
}

/**
 * Whether a run visible to this transaction was sent with this key. Runs that came from a
 * channel webhook, or from another key, are not the key's (row-level security hides other
 * projects' runs as well).
 */
export async function keyOwnsRun(
  db: CommonQueryMethods,
  keyId: string,
  runId: string,
): Promise<boolean> {
  const row = await db.maybeOne(sql.type(RunIdRow)`
    SELECT run_id AS "runId" FROM runs WHERE run_id = ${runId} AND api_key_id = ${keyId}`);
  return row !== null;
}
