/**
 * Every `action` an `audit_events` row may carry, with one line on what it records. Callers of
 * `appendAudit` are type-checked against {@link AuditAction}; the rows that `db/` writes in
 * SQL itself (a run's creation and transitions, flow modes, contract pointers) use the same
 * names, listed here too. `docs/audit-actions.md` is rendered from this map and a test keeps
 * it equal.
 */
export const AUDIT_ACTIONS = {
  // The platform and the control plane
  'platform.access':
    'A transaction entered the platform role; `detail.reason` says why (project `platform`).',
  'tenant.apply':
    '`awooop apply` finished for a project: which contracts it drafted, published and activated.',
  'project.create': 'The project row was created by an apply.',
  'project.update': "The project's display name was changed by an apply.",
  'artifact.store': 'An artifact (prompt, schema, ...) was stored by ref and SHA-256.',
  'contract.draft': 'A contract draft was created or its body changed.',
  'contract.publish': 'A contract revision was published (append-only from then on).',
  'contract.activate': "A contract's active pointer moved to a published revision.",
  'contract.rollback': "A contract's active pointer moved back to the previous revision.",
  'flow.mode.set':
    "A flow's migration mode was set (shadow, canary, read_only, suggest, auto_remediate).",
  'flow.mode.clear': "A flow's migration mode was removed with the runtime revision that set it.",
  'secret.set': 'A sealed secret was stored or replaced (`awooop secrets set`); never its value.',
  'secret.removed': 'A sealed secret was removed (`awooop secrets rm`).',
  'api_key.created': 'A project API key was created (its id and roles, never the key).',
  'api_key.revoked': 'A project API key was revoked.',
  'channel.start': 'An operator asked for a stopped channel account to run again (API or CLI).',
  'channel.stop':
    'An operator stopped a channel account: its intake answers 503 and its sends wait (API or CLI).',
  'channel.restart':
    "An operator asked for a channel account's connection and registration to be redone.",

  // Runs: creation and each transition of the run state machine
  'run.received': 'Ingress accepted an event and created its run (RECEIVED).',
  'run.resolved': 'resolve bound the run to an agent and pinned its contracts (RESOLVED).',
  'run.admitted': 'policy admitted the run, or an approval or a retry brought it back (ADMITTED).',
  'run.waiting_approval': 'execute paused the run for a human approval (WAITING_APPROVAL).',
  'run.executed': 'execute finished the agent loop (EXECUTED).',
  'run.sanitized': 'sanitize validated, redacted and split the output (SANITIZED).',
  'run.completed': 'deliver sent the answer, or shadow mode suppressed it (COMPLETED).',
  'run.failed': 'The run failed; `detail.failure_code` is an error code (FAILED).',
  'run.requeued': "The sweeper enqueued a run's stage job again (Redis lost it, or it stalled).",
  'run.retried': '`awooop runs retry` put a failed run back in the state it failed from.',

  // Provider health (platform resources, project `platform`, chain `provider:<endpoint id>`)
  'provider.registered':
    'A model provider endpoint became a platform resource (its first use by a route, or an operator).',
  'provider.breaker.opened':
    "An endpoint's circuit breaker opened: consecutive failures, a failed probe, or an operator's hold (`detail.forced`).",
  'provider.breaker.half_opened': "An open breaker's cool-down passed: probe calls are admitted.",
  'provider.breaker.closed': 'A breaker closed: a probe answered, or an operator closed it.',
  'provider.breaker.reset':
    'An operator reset a breaker: closed, with its failure count and open count cleared.',

  // Budgets
  'budget.alert':
    "A project's spend passed its budget's `alertAtPercent` for a day or month (once per period and limit).",
  'budget.alert_sent':
    "A budget alert was sent to one of the project's owners on its approvals account.",

  // Privacy
  'retention.applied':
    "The retention pass blanked a project's conversation text older than `dataBoundary.retentionDays`; `detail` holds counts per table, never text.",

  // Tools and approvals
  'tool.call': 'A tool call started or settled; `detail.status` says which (never the arguments).',
  'approval.requested': 'A tool call asked for a human approval.',
  'approval.approved': 'An approver approved the tool call.',
  'approval.rejected': 'An approver rejected the tool call.',
  'approval.expired': 'The approval passed its deadline undecided.',
  'approval.notified': 'An approval notice was sent to an approver.',
} as const;

/** An action in {@link AUDIT_ACTIONS}: what `appendAudit` accepts. */
export type AuditAction = keyof typeof AUDIT_ACTIONS;
