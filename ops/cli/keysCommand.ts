import { appendAudit } from '../../db/auditEvents.ts';
import {
  API_KEY_ROLES,
  createApiKey,
  listApiKeys,
  revokeApiKey,
  type ApiKeyRole,
} from '../../db/apiKeys.ts';
import { withProject } from '../../db/withProject.ts';
import { Identifier } from '../../pipeline/contracts/common.ts';
import { readActiveContract } from '../../pipeline/control/readActiveContract.ts';
import type { CliContext } from './CliContext.ts';
import { parseCommandArgs, requireProject } from './parseCommandArgs.ts';
import { UsageError } from './UsageError.ts';

const USAGE = `usage:
  awooop keys create --project P [--name N] [--role client|viewer|operator|approver|admin]...   print a new API key (shown once)
  awooop keys create --project P [--name N] --role mcp --agent NAME            a key for agent NAME's MCP endpoint only
  awooop keys list --project P
  awooop keys revoke KEY_ID --project P`;

/**
 * `awooop keys create|list|revoke`: the API channel's bearer keys (stored hashed), and the
 * `mcp` keys that open one agent's MCP endpoint (`--role mcp --agent NAME`, that role alone).
 */
export async function keysCommand(ctx: CliContext, [sub, ...args]: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs(args, {
    project: { type: 'string', short: 'p' },
    name: { type: 'string' },
    role: { type: 'string', multiple: true },
    agent: { type: 'string' },
  });
  if (sub !== 'create' && sub !== 'list' && sub !== 'revoke') throw new UsageError(USAGE);
  const projectId = requireProject(values.project);
  const { pool } = await ctx.connect();
  switch (sub) {
    case 'create': {
      const roles = (values.role ?? ['client']).map((r) => {
        if (!API_KEY_ROLES.includes(r as ApiKeyRole))
          throw new UsageError(`--role: "${r}" is not one of ${API_KEY_ROLES.join(', ')}`);
        return r as ApiKeyRole;
      });
      const agent = mcpKeyAgent(roles, values.agent);
      const name = values.name ?? 'default';
      if (name.length > 100) throw new UsageError('--name: at most 100 characters');
      const created = await withProject(pool, projectId, async (tx) => {
        if (agent && !(await readActiveContract(tx, { projectId, kind: 'agent', name: agent }))) {
          throw new UsageError(`--agent: "${agent}" is not an active agent of ${projectId}`);
        }
        const key = await createApiKey(tx, { projectId, name, roles, actor: ctx.actor, agent });
        await appendAudit(tx, {
          projectId,
          chain: `api_key:${key.keyId}`,
          actor: ctx.actor,
          action: 'api_key.created',
          subject: `api_key:${key.keyId}`,
          detail: { name, roles, ...(agent ? { agent } : {}) },
        });
        return key;
      });
      ctx.print(created.key);
      process.stderr.write(
        `key ${created.keyId} (${roles.join(', ')}${agent ? ` of agent ${agent}` : ''}) for ${projectId}; it is shown only now\n`,
      );
      return 0;
    }
    case 'list': {
      const keys = await withProject(pool, projectId, (tx) => listApiKeys(tx, projectId));
      for (const k of keys) {
        ctx.print(
          `${k.keyId}  ${k.keyPrefix}…  ${k.name}  [${k.roles.join(', ')}]${k.agent ? `  agent ${k.agent}` : ''}${k.revokedAt ? '  revoked' : ''}`,
        );
      }
      if (keys.length === 0) ctx.print(`no keys for ${projectId}`);
      return 0;
    }
    case 'revoke': {
      const keyId = positionals[0];
      if (!keyId || !/^[0-9a-f-]{36}$/.test(keyId))
        throw new UsageError('revoke: name the KEY_ID (a UUID from keys list)');
      const revoked = await withProject(pool, projectId, async (tx) => {
        const done = await revokeApiKey(tx, projectId, keyId);
        if (done) {
          await appendAudit(tx, {
            projectId,
            chain: `api_key:${keyId}`,
            actor: ctx.actor,
            action: 'api_key.revoked',
            subject: `api_key:${keyId}`,
          });
        }
        return done;
      });
      ctx.print(revoked ? `revoked ${keyId}` : `no live key ${keyId} in ${projectId}`);
      return revoked ? 0 : 1;
    }
  }
}

/** The agent an `mcp` key is for: `--agent` is required with `--role mcp` and refused without. */
function mcpKeyAgent(roles: readonly ApiKeyRole[], agent: string | undefined): string | undefined {
  if (!roles.includes('mcp')) {
    if (agent !== undefined) throw new UsageError('--agent: only with --role mcp');
    return undefined;
  }
  if (roles.length !== 1) throw new UsageError('--role: mcp cannot be combined with other roles');
  if (agent === undefined) {
    throw new UsageError(
      '--agent: required with --role mcp (the agent whose endpoint the key opens)',
    );
  }
  if (!Identifier.safeParse(agent).success)
    throw new UsageError(`--agent: not an agent name: ${JSON.stringify(agent)}`);
  return agent;
}
