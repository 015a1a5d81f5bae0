import type { ProjectContract } from '../contracts/projectContract.ts';

/**
 * Whether an ACL subject (`telegram:<user id>`, `email:…`) may decide the project's
 * approvals: a member holding the project's `approvals.approverRole`, or `admin`.
 */
export function isApprover(project: ProjectContract, subject: string): boolean {
  const role = project.approvals.approverRole;
  return project.acl.members.some(
    (m) => m.subject === subject && m.roles.some((r) => r === role || r === 'admin'),
  );
}
