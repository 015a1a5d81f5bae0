import { z } from 'zod';
import { ChannelType, Identifier, PiiClass } from './common.ts';

const Role = z.enum(['admin', 'operator', 'viewer']);

/** Who an ACL member is: `api:<key id>`, `telegram:<user id>`, `email:…`, and so on. */
export const AclSubject = z
  .string()
  .regex(
    /^(email|telegram|line|slack|discord|api):\S+$/,
    'must be email:, telegram:, line:, slack:, discord: or api: followed by an id',
  );

/** A route from where a message comes from to the agent that answers it; most specific wins. */
export const Binding = z
  .strictObject({
    agent: Identifier,
    channel: ChannelType.optional(),
    account: Identifier.optional(),
    peer: z.string().min(1).max(200).optional(),
    group: z.string().min(1).max(200).optional(),
    thread: z.string().min(1).max(200).optional(),
  })
  .refine((b) => b.thread === undefined || b.group !== undefined, {
    message: 'a thread binding needs its group',
    path: ['thread'],
  });
export type Binding = z.infer<typeof Binding>;

/** Project / Tenant: identity, data boundary, budget, ACL, approval gates, bindings. */
export const ProjectContract = z.strictObject({
  displayName: z.string().min(1).max(120),
  description: z.string().max(2000).optional(),
  // owners, dataBoundary and budget: refused by apply (not supported yet); read only in
  // revisions stored before.
  owners: z.array(z.string().min(1).max(200)).min(1, 'needs at least one owner').optional(),
  dataBoundary: z
    .strictObject({
      region: z.string().min(1).max(64),
      retentionDays: z.int().min(1).max(3650),
      piiClasses: z.array(PiiClass).default([]),
    })
    .optional(),
  budget: z
    .strictObject({
      currency: z.literal('USD').default('USD'),
      monthlyLimitUsd: z.number().min(0),
      dailyLimitUsd: z.number().min(0).optional(),
      alertAtPercent: z.int().min(1).max(100).default(80),
    })
    .refine((b) => b.dailyLimitUsd === undefined || b.dailyLimitUsd <= b.monthlyLimitUsd, {
      message: 'must not exceed monthlyLimitUsd',
      path: ['dailyLimitUsd'],
    })
    .optional(),
  acl: z.strictObject({
    members: z.array(
      z.strictObject({
        subject: AclSubject,
        roles: z.array(Role).min(1, 'needs at least one role'),
      }),
    ),
  }),
  approvals: z
    .strictObject({
      channel: Identifier.optional(),
      approverRole: z.enum(['admin', 'operator']).default('operator'),
    })
    .prefault({}),
  bindings: z.array(Binding).default([]),
  defaultAgent: Identifier,
});
export type ProjectContract = z.infer<typeof ProjectContract>;
