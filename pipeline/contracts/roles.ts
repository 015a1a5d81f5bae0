/**
 * Every role a caller can hold. API keys hold any of them; ACL members (people and keys named
 * in a project contract) hold {@link ACL_ROLES}. What each grants is the permission table in
 * `pipeline/control/permissions.ts`.
 *
 * - `client`: an application: sends messages, reads the runs it sent.
 * - `viewer`: reads runs, usage, approvals, channels, contracts and the audit trail.
 * - `operator`: a viewer who also acts on runs (retry), sends messages and manages channels.
 * - `approver`: sees and decides approvals.
 * - `admin`: everything of the project, keys, secrets and contract changes included.
 * - `mcp`: one agent's MCP endpoint and nothing else.
 */
export const ROLES = ['client', 'viewer', 'operator', 'approver', 'admin', 'mcp'] as const;
export type Role = (typeof ROLES)[number];

/** The roles an ACL member of a project contract may hold. */
export const ACL_ROLES = ['viewer', 'operator', 'approver', 'admin'] as const;
export type AclRole = (typeof ACL_ROLES)[number];
