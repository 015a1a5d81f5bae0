import { randomBytes, randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { DatabasePool } from 'slonik';
import { acceptEvent } from '../db/runs.ts';
import { withProject } from '../db/withProject.ts';
import type { Admission, Overload } from '../pipeline/admission/createAdmission.ts';
import type { NormalizedInbound } from '../pipeline/channels/inboundTypes.ts';
import { countChannel } from '../pipeline/channels/manager/channelStats.ts';
import type { ChannelLimits } from '../pipeline/contracts/channelContract.ts';
import type { ChannelType } from '../pipeline/contracts/common.ts';
import { ConversationEvent } from '../pipeline/contracts/conversationEvent.ts';
import { formatIssues } from '../pipeline/contracts/formatIssues.ts';
import { AppError, ContractViolationError, TryLaterError } from '../pipeline/errors.ts';
import { redactKnownValues } from '../pipeline/sanitize/redactSecrets.ts';
import type { SecretResolver } from '../pipeline/secrets/createSecretResolver.ts';
import type { Enqueue } from '../pipeline/Enqueue.ts';

/** What the durable write needs. */
export type AcceptDeps = {
  pool: DatabasePool;
  enqueue: Enqueue;
  logger: Logger;
  /** The project's known credential values, removed from what a user typed before it is stored. */
  secrets: Pick<SecretResolver, 'knownValues'>;
  runTimeoutMs?: number;
  /** Where each account's inbound count is kept until the ChannelManager flushes it. */
  redis: Redis;
  redisPrefix: string;
  /** Limits and backlog bounds checked before the write; absent: none (as in most tests). */
  admission?: Admission | undefined;
};

/** Where a batch of inbound events came from. */
export type InboundSource = {
  projectId: string;
  channel: ChannelType;
  accountId: string;
  traceId: string;
  /** The API key that sent it (API channel): recorded on the run, which scopes who reads it. */
  apiKeyId?: string;
  /**
   * SHA-256 of the canonical request (API channel). A duplicate whose first copy stored another
   * hash is a reused Idempotency-Key with a different body: refused with 422.
   */
  requestHash?: string;
  /** The account's limits (its channel contract's `limits`). */
  limits?: ChannelLimits | undefined;
  /**
   * What a message past a limit gets: refused with `Retry-After` (the default: the channel
   * delivers it again, the client retries) or absorbed (written, its run delayed), for a
   * channel that would lose a refused message (see the plugins' `overload`).
   */
  overload?: Overload;
};

/** The run an inbound event became, and whether this request created it. */
export type Accepted = { runId: string; created: boolean };

/**
 * Makes each inbound event durable — event and run in one transaction, deduped on the
 * channel's event id — and only then enqueues its first stage. Returns once every event is
 * committed, so the caller answers 2xx only for what cannot be lost. A duplicate (a retried
 * or concurrent copy) gets the existing run and enqueues nothing. If the enqueue fails after
 * the commit, the run is still in Postgres and the sweeper enqueues it; the web process's
 * enqueue fails fast (see `FAIL_FAST_REDIS`), so Redis being away never holds the answer up.
 * An event that does not
 * fit the {@link ConversationEvent} schema is a 400 naming the field; nothing is written.
 * With `deps.admission`, every event is checked first and then the request is admitted
 * (limits, backlog bounds): a refusal is a {@link TryLaterError} (429 / 503 with
 * `Retry-After`) before anything is written, or, for `overload: 'absorb'`, the runs are
 * written and their first stage delayed. Each run's `resolve` job carries its fair priority.
 * A credential of the project's that the user typed (any of its secrets, as the sanitize
 * stage knows them) is replaced by `[REDACTED]` in the message text, its subject, the sender's
 * name and attachment names before the event is stored, so neither `conversation_events`, the model nor the history
 * later runs send it ever holds the value. The Idempotency-Key's request hash is of the body
 * as sent, so a retry of it still finds its run.
 */
export async function acceptInbound(
  deps: AcceptDeps,
  source: InboundSource,
  events: readonly NormalizedInbound[],
): Promise<Accepted[]> {
  const accepted: Accepted[] = [];
  const known = events.length > 0 ? await deps.secrets.knownValues(source.projectId) : [];
  // Every event is checked before any is written or counted: a batch with a bad event is a
  // 400 that changes nothing.
  const prepared = events.map((inbound, i) => {
    // One trace per run: the request's trace for the first event, fresh ones for the rest.
    const traceId = i === 0 ? source.traceId : randomBytes(16).toString('hex');
    const parsed = ConversationEvent.safeParse({
      ...inbound,
      eventId: randomUUID(),
      projectId: source.projectId,
      traceId,
      channel: source.channel,
      accountId: source.accountId,
      ...(source.apiKeyId === undefined ? {} : { apiKeyId: source.apiKeyId }),
      receivedAt: new Date().toISOString(),
    });
    if (!parsed.success) {
      throw new ContractViolationError(formatIssues(parsed.error), undefined, {
        code: 'EVENT_INVALID',
      });
    }
    return { ...redactEvent(parsed.data, known), traceId, runId: randomUUID() };
  });
  const runTimeoutMs = deps.runTimeoutMs ?? 300_000;
  const verdict = deps.admission
    ? await deps.admission.admit({
        projectId: source.projectId,
        accountId: source.accountId,
        accountLimits: source.limits,
        events: prepared.map((p) => ({
          runId: p.runId,
          senderId: p.event.sender.id,
          conversationId: p.event.conversation.id,
        })),
        runTimeoutMs,
        overload: source.overload ?? 'refuse',
      })
    : ({ kind: 'unchecked' } as const);
  if (verdict.kind === 'refused') {
    throw new TryLaterError(verdict.code, verdict.message, verdict.retryAfterS, {
      status: verdict.status,
    });
  }
  const admitted = verdict.kind === 'admitted' ? verdict : undefined;
  // The holds admission took for runs this request did not create (a duplicate, a failed
  // write) are given back, so they do not count as backlog.
  const unused = new Set(admitted ? prepared.map((p) => p.runId) : []);
  try {
    for (const { event, redactions, traceId, runId } of prepared) {
      const result = await withProject(deps.pool, source.projectId, (tx) =>
        acceptEvent(tx, event, {
          runId,
          runTimeoutMs,
          requestHash: source.requestHash ?? null,
        }),
      );
      if (result.created) unused.delete(runId);
      if (!result.created && source.requestHash && result.requestHash !== source.requestHash) {
        throw new AppError(
          'IDEMPOTENCY_KEY_REUSED',
          'this Idempotency-Key was already used with a different request body',
          { status: 422 },
        );
      }
      accepted.push({ runId: result.runId, created: result.created });
      const line = {
        runId: result.runId,
        projectId: source.projectId,
        traceId,
        channel: source.channel,
        accountId: source.accountId,
      };
      if (!result.created) {
        deps.logger.info(line, 'duplicate event; no new run');
        continue;
      }
      deps.logger.info(
        { ...line, redactions, ...(admitted?.delayMs ? { delayMs: admitted.delayMs } : {}) },
        'run accepted',
      );
      try {
        await deps.enqueue(
          'resolve',
          { projectId: source.projectId, runId: result.runId, traceId, stage: 'resolve' },
          admitted ? { priority: admitted.priority, delayMs: admitted.delayMs } : {},
        );
      } catch (error) {
        deps.logger.warn(
          { ...line, err: (error as Error).message },
          'enqueue failed after commit; the sweeper will pick the run up',
        );
      }
    }
  } finally {
    if (unused.size > 0) void deps.admission?.forget(source.projectId, [...unused]);
  }
  const created = accepted.filter((a) => a.created).length;
  // Not awaited: a statistic never holds the answer up while Redis is slow (it never throws).
  void countChannel(deps.redis, deps.redisPrefix, source, { inbound: created });
  return accepted;
}

/** The event with the known credential values taken out of the text its sender wrote. */
function redactEvent(
  event: ConversationEvent,
  known: readonly string[],
): { event: ConversationEvent; redactions: number } {
  if (known.length === 0) return { event, redactions: 0 };
  const text = redactKnownValues(event.message.text, known);
  const name = event.sender.displayName;
  const displayName = name === undefined ? undefined : redactKnownValues(name, known);
  let fileRedactions = 0;
  const attachments = event.message.attachments.map((a) => {
    if (a.name === undefined) return a;
    const redacted = redactKnownValues(a.name, known);
    fileRedactions += redacted.redactions;
    return { ...a, name: redacted.text };
  });
  const subject =
    event.message.subject === undefined
      ? undefined
      : redactKnownValues(event.message.subject, known);
  return {
    event: {
      ...event,
      message: {
        ...event.message,
        text: text.text,
        attachments,
        ...(subject === undefined ? {} : { subject: subject.text }),
      },
      sender: {
        ...event.sender,
        ...(displayName === undefined ? {} : { displayName: displayName.text }),
      },
    },
    redactions:
      text.redactions +
      (displayName?.redactions ?? 0) +
      (subject?.redactions ?? 0) +
      fileRedactions,
  };
}
