import { findApiKey } from '../../db/apiKeys.ts';
import { withProject } from '../../db/withProject.ts';
import { authorize, COMMAND_GATES, type Gate } from '../../pipeline/control/permissions.ts';
import { AppError } from '../../pipeline/errors.ts';
import type { CliContext } from './CliContext.ts';
import { UsageError } from './UsageError.ts';

/** A project key's shape: `awk_<project>_<43 base64url characters>`. */
const KEY_SHAPE = /^awk_([a-z][a-z0-9_-]{1,62})_[A-Za-z0-9_-]{43}$/;

/**
 * The command's line in the permission table: `NAME SUB` where the table has it (`runs
 * retry`), else `NAME` (`usage`, `hash`, and `channels` run as a process); undefined for a
 * command or subcommand the table does not know.
 */
export function commandGate(name: string, args: readonly string[]): Gate | undefined {
  const sub = args[0];
  if (sub !== undefined && COMMAND_GATES[`${name} ${sub}`] !== undefined)
    return COMMAND_GATES[`${name} ${sub}`];
  const hasSubs = Object.keys(COMMAND_GATES).some((c) => c.startsWith(`${name} `));
  // `channels` alone runs the process; `channels bogus` is no command of the table.
  if (hasSubs && sub !== undefined && !sub.startsWith('-')) return undefined;
  return COMMAND_GATES[name];
}

/**
 * Checks, before a command runs, that its caller may run it, and returns the context it runs
 * with. Without a key the caller is the platform operator (it holds the platform's database
 * login) and may run everything. With `key` (`--key` or `AWOOOP_API_KEY`), the key must be a
 * live key of the project it names; the command must be in the table, gated by an action one
 * of the key's roles grants (else `FORBIDDEN`, naming the roles that would), not a platform
 * command, and given `--project` of the key's own project. The key's caller acts as
 * `api:<key id>` in the audit trail. Changes nothing.
 */
export async function authorizeCommand(
  ctx: CliContext,
  name: string,
  args: readonly string[],
  key: string | undefined,
): Promise<CliContext> {
  if (key === undefined) return ctx;
  const gate = commandGate(name, args);
  const command =
    gate !== undefined && COMMAND_GATES[`${name} ${args[0]}`] ? `${name} ${args[0]}` : name;
  if (gate === undefined)
    throw new UsageError(
      `${name}${args[0] ? ` ${args[0]}` : ''}: no such command (see awooop help)`,
    );
  if (gate === 'open') return ctx;
  const shape = KEY_SHAPE.exec(key);
  const projectId = shape?.[1];
  const found =
    projectId === undefined
      ? null
      : await withProject((await ctx.connect()).pool, projectId, (tx) =>
          findApiKey(tx, projectId, key),
        );
  if (!found || projectId === undefined)
    throw new AppError('UNAUTHORIZED', '--key: not a live API key of any project', {
      status: 401,
    });
  if (gate === 'platform' || gate === 'channel' || gate === 'token') {
    throw new AppError(
      'FORBIDDEN',
      `${command} is a platform command: no project key opens it (run it without --key, as the platform operator)`,
      { status: 403 },
    );
  }
  authorize(found.roles, gate, `this key (${found.roles.join(', ')})`);
  const project = projectOption(args);
  if (project === undefined)
    throw new UsageError(`--project: required with --key (the key's project, ${projectId})`);
  if (project !== projectId)
    throw new AppError(
      'FORBIDDEN',
      `--project: this key is of project ${projectId}, not ${project}`,
      {
        status: 403,
      },
    );
  return {
    ...ctx,
    actor: `api:${found.keyId}`,
    caller: { kind: 'key', projectId, keyId: found.keyId, roles: found.roles },
  };
}

/** The `--project` (`-p`) value among a command's arguments, as its own parser reads it. */
function projectOption(args: readonly string[]): string | undefined {
  let value: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--') break;
    if (a === '--project' || a === '-p') value = args[++i];
    else if (a.startsWith('--project=')) value = a.slice('--project='.length);
    else if (a.startsWith('-p') && a.length > 2 && !a.startsWith('--')) value = a.slice(2);
  }
  return value;
}
