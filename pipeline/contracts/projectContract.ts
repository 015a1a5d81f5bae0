import { z } from 'zod';
import { ChannelType, Identifier, PiiClass } from './common.ts';
import { ACL_ROLES } from './roles.ts';

const Role = z.enum(ACL_ROLES);

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

/**
 * A project's budget. `monthlyLimitUsd` was once required; a revision stored then still
 * reads. At least one limit is needed.
 */
export const ProjectBudget = z
  .strictObject({
    currency: z.literal('USD').default('USD'),
    monthlyLimitUsd: z.number().min(0).optional(),
    dailyLimitUsd: z.number().min(0).optional(),
    monthlyLimitTokens: z.int().min(0).optional(),
    dailyLimitTokens: z.int().min(0).optional(),
    /** Owners are told once per period and limit when its spend passes this share. */
    alertAtPercent: z.int().min(1).max(100).default(80),
  })
  .refine(
    (b) =>
      b.dailyLimitUsd === undefined ||
      b.monthlyLimitUsd === undefined ||
      b.dailyLimitUsd <= b.monthlyLimitUsd,
    { message: 'must not exceed monthlyLimitUsd', path: ['dailyLimitUsd'] },
  )
  .refine(
    (b) =>
      b.dailyLimitTokens === undefined ||
      b.monthlyLimitTokens === undefined ||
      b.dailyLimitTokens <= b.monthlyLimitTokens,
    { message: 'must not exceed monthlyLimitTokens', path: ['dailyLimitTokens'] },
  )
  .refine(
    (b) =>
      [b.monthlyLimitUsd, b.dailyLimitUsd, b.monthlyLimitTokens, b.dailyLimitTokens].some(
        (v) => v !== undefined,
      ),
    {
      message:
        'needs at least one of dailyLimitUsd, monthlyLimitUsd, dailyLimitTokens, monthlyLimitTokens',
    },
  );
export type ProjectBudget = z.infer<typeof ProjectBudget>;

/** Project / Tenant: identity, data boundary, budget, ACL, approval gates, bindings. */
export const ProjectContract = z.strictObject({
  displayName: z.string().min(1).max(120),
  description: z.string().max(2000).optional(),
  // owners and dataBoundary: refused by apply (not supported yet); read only in revisions
  // stored before.
  owners: z.array(z.string().min(1).max(200)).min(1, 'needs at least one owner').optional(),
  dataBoundary: z
    .strictObject({
      region: z.string().min(1).max(64),
      retentionDays: z.int().min(1).max(3650),
      piiClasses: z.array(PiiClass).default([]),
    })
    .optional(),
  /** The project's own limits, per UTC day and month, in USD and tokens, for all its runs. */
  budget: ProjectBudget.optional(),
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
      /**
       * Who decides approvals: members with the `approver` role (or `admin`), or `admin` only.
       * `operator` is how revisions stored before the `approver` role read (it was the
       * default); such a revision is read as `approver`, and apply refuses the value.
       */
      approverRole: z.enum(['approver', 'admin', 'operator']).default('approver'),
    })
    .prefault({}),
  bindings: z.array(Binding).default([]),
  defaultAgent: Identifier,
});
export type ProjectContract = z.infer<typeof ProjectContract>;
