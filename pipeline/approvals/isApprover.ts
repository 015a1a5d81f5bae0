import type { ProjectContract } from '../contracts/projectContract.ts';
import { can } from '../control/permissions.ts';

/**
 * The roles that decide the project's approvals, for messages naming them: those the
 * permission table grants `approvals.decide` (`approver`, `admin`), or `admin` alone when
 * `approvals.approverRole` is `admin`.
 */
export function approverRoles(project: ProjectContract): readonly string[] {
  return project.approvals.approverRole === 'admin' ? ['admin'] : ['approver', 'admin'];
}

/**
 * Whether an ACL subject (`telegram:<user id>`, `api:<key id>`, `email:…`) may decide the
 * project's approvals: a member whose roles grant `approvals.decide` in the permission table
 * (`approver` or `admin`), or `admin` only where `approvals.approverRole` is `admin`. A
 * revision stored before the `approver` role says `approverRole: operator`: it reads as
 * `approver`, so an `operator` member alone decides nothing.
 */
export function isApprover(project: ProjectContract, subject: string): boolean {
  const adminOnly = project.approvals.approverRole === 'admin';
  return project.acl.members.some(
    (m) =>
      m.subject === subject &&
      (adminOnly ? m.roles.includes('admin') : can(m.roles, 'approvals.decide')),
  );
}
