import { ROLES, type Role } from '../contracts/roles.ts';
import { AppError } from '../errors.ts';

/**
 * The permission table: what each role may do, by action. Every API route and every CLI
 * command names the action it performs (the route and command tables below), and is let
 * through only for a caller holding a role that grants it; a caller with several roles gets
 * the union. The same table decides for ACL members (`isApprover`). Change a grant here and
 * every path follows; `test/control/permissionMatrix.test.ts` drives every route and command
 * with every role against it.
 */
export const PERMISSIONS = {
  /** Send a message to the project's API channel (`POST …/messages`). */
  'messages.send': ['client', 'operator', 'admin'],
  /** Read runs and follow their events (a `client` only the runs it sent: `runs.read_any`). */
  'runs.read': ['client', 'viewer', 'operator', 'admin'],
  /** Read every run of the project, not only one's own. */
  'runs.read_any': ['viewer', 'operator', 'admin'],
  /** Act on a run: retry a failed one. */
  'runs.act': ['operator', 'admin'],
  /** List approvals. */
  'approvals.read': ['viewer', 'operator', 'approver', 'admin'],
  /** Approve or reject a tool call (the decider must also be an ACL approver of the project). */
  'approvals.decide': ['approver', 'admin'],
  /** The project's spend. */
  'usage.read': ['viewer', 'operator', 'admin'],
  /** Channel accounts and their state. */
  'channels.read': ['viewer', 'operator', 'admin'],
  /** Start, stop and restart channel accounts. */
  'channels.manage': ['operator', 'admin'],
  /** Contracts, their revisions and diffs. */
  'contracts.read': ['viewer', 'operator', 'admin'],
  /** Apply a tenant file, activate or roll back a contract. */
  'contracts.write': ['admin'],
  /** Verify the audit trail. */
  'audit.read': ['viewer', 'operator', 'admin'],
  /** Fold settled audit rows into a checkpoint. */
  'audit.write': ['admin'],
  /** Create, list and revoke API keys. */
  'keys.manage': ['admin'],
  /** Set, list and remove sealed secrets. */
  'secrets.manage': ['admin'],
  /** One agent's MCP endpoint (the key is bound to the agent besides). */
  'mcp.use': ['mcp'],
} as const satisfies Record<string, readonly Role[]>;

export type Action = keyof typeof PERMISSIONS;

/**
 * How a route or command is let in besides by role: `platform` needs the platform operator
 * (the CLI run without a project key: migrations, queues, processes, every project at once);
 * `open` needs nothing (health, `hash`); `channel` takes the channel's own signature or
 * secret, `token` a platform token (`/metrics`, bull-board), never a project key.
 */
export type Gate = Action | 'platform' | 'open' | 'channel' | 'token';

/**
 * Every HTTP route, `METHOD /path` as its router declares it, and its gate. A route missing
 * here fails the permission-matrix test.
 */
export const ROUTE_GATES: Record<string, Gate> = {
  'GET /healthz': 'open',
  'GET /readyz': 'open',
  'GET /metrics': 'token',
  'POST /webhooks/:channel/:projectId/:accountId': 'channel',
  'POST /v1/projects/:projectId/messages': 'messages.send',
  'GET /v1/projects/:projectId/runs/:runId': 'runs.read',
  'GET /v1/projects/:projectId/runs/:runId/events': 'runs.read',
  'GET /v1/projects/:projectId/approvals': 'approvals.read',
  'POST /v1/projects/:projectId/approvals/:approvalId/approve': 'approvals.decide',
  'POST /v1/projects/:projectId/approvals/:approvalId/reject': 'approvals.decide',
  'GET /v1/projects/:projectId/usage': 'usage.read',
  'GET /v1/projects/:projectId/channels': 'channels.read',
  'POST /v1/projects/:projectId/channels/:accountId/start': 'channels.manage',
  'POST /v1/projects/:projectId/channels/:accountId/stop': 'channels.manage',
  'POST /v1/projects/:projectId/channels/:accountId/restart': 'channels.manage',
  'POST /v1/projects/:projectId/agents/:agent/mcp': 'mcp.use',
  'GET /admin/queues': 'token',
};

/**
 * Every CLI command (`NAME` or `NAME SUB`) and its gate. The CLI looks its command up here
 * before it runs (`authorizeCommand`); one missing is refused to a project key.
 * A command another change adds gets its line here.
 */
export const COMMAND_GATES: Record<string, Gate> = {
  migrate: 'platform',
  apply: 'contracts.write',
  'contracts list': 'contracts.read',
  'contracts show': 'contracts.read',
  'contracts diff': 'contracts.read',
  'contracts activate': 'contracts.write',
  'contracts rollback': 'contracts.write',
  'audit verify': 'audit.read',
  'audit checkpoint': 'audit.write',
  'runs list': 'runs.read_any',
  'runs show': 'runs.read_any',
  'runs retry': 'runs.act',
  'approvals list': 'approvals.read',
  'approvals approve': 'approvals.decide',
  'approvals reject': 'approvals.decide',
  usage: 'usage.read',
  'jobs failed': 'platform',
  'jobs retry': 'platform',
  'jobs inspect': 'platform',
  'keys create': 'keys.manage',
  'keys list': 'keys.manage',
  'keys revoke': 'keys.manage',
  'secrets set': 'secrets.manage',
  'secrets list': 'secrets.manage',
  'secrets rm': 'secrets.manage',
  'channels status': 'channels.read',
  'channels start': 'channels.manage',
  'channels stop': 'channels.manage',
  'channels restart': 'channels.manage',
  // Provider endpoints are platform resources: only the platform operator lists or moves them.
  'providers list': 'platform',
  'providers add': 'platform',
  'providers open': 'platform',
  'providers close': 'platform',
  'providers reset': 'platform',
  hash: 'open',
  web: 'platform',
  worker: 'platform',
  sweeper: 'platform',
  channels: 'platform',
  dev: 'platform',
};

/** Whether any of `roles` grants `action`. An unknown role grants nothing. */
export function can(roles: readonly string[], action: Action): boolean {
  const granted: readonly string[] = PERMISSIONS[action];
  return roles.some((r) => granted.includes(r));
}

/** The roles that grant `action`, for messages naming what is needed. */
export function rolesFor(action: Action): readonly Role[] {
  return PERMISSIONS[action];
}

/** Whether `value` is a role, for refusing an unknown one by name. */
export function isRole(value: string): value is Role {
  return (ROLES as readonly string[]).includes(value);
}

/**
 * The refusal of a caller without a role that grants `action`: 403 `FORBIDDEN`, naming the
 * roles that would.
 */
export function forbidden(action: Action, who = 'this key'): AppError {
  const roles = rolesFor(action);
  return new AppError(
    'FORBIDDEN',
    `${who} may not ${action}: it needs the ${roles.join(' or ')} role`,
    { status: 403 },
  );
}

/** Throws {@link forbidden} unless `roles` grant `action`. */
export function authorize(roles: readonly string[], action: Action, who?: string): void {
  if (!can(roles, action)) throw forbidden(action, who);
}
