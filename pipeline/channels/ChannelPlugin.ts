import type { Redis } from 'ioredis';
import type { DecidedVia } from '../../db/approvals.ts';
import type { ClaimedRow } from '../../db/outboundMessages.ts';
import type { Run } from '../../db/runs.ts';
import type { ChannelContract } from '../contracts/channelContract.ts';
import type { ChannelType, SecretRef } from '../contracts/common.ts';
import type { ConversationEvent } from '../contracts/conversationEvent.ts';
import type { ChannelFormat } from '../sanitize/toChannelUnits.ts';
import type { InboundBatch } from './inboundTypes.ts';

/** One channel account's contract, narrowed to the plugin's type. */
export type AccountOf<T extends ChannelType> = Extract<ChannelContract, { type: T }>;

/** How a channel marks text up: what sanitize escapes for and splits in (`plain`: nothing). */
export type MarkupDialect = ChannelFormat;

/** What a channel can do; the pipeline reads these instead of asking which channel it is. */
export type ChannelCapabilities = {
  /** A conversation may carry a thread id that answers go back into (Telegram forum topics). */
  threads: boolean;
  /** The channel sends edits of earlier messages as updates (they are acknowledged, not runs). */
  edits: boolean;
  /** A typing / loading indicator can be shown while a run executes. */
  typing: boolean;
  /**
   * A short status note (`progress.statusText`) is sent when a run is still executing after
   * `progress.statusAfterMs`. False where clients follow the run's events instead (the API).
   */
  statusNote: boolean;
  /** Messages can carry buttons (what asking an approver needs). */
  buttons: boolean;
  /**
   * The most characters one message may carry, in UTF-16 code units as the channel counts
   * them (null: no limit); an account's `formatting.maxChunkChars` may only lower it.
   */
  maxMessageChars: number | null;
  /** The most ledger rows one send call carries (LINE: 5 messages per reply or push). */
  batchSize: number;
};

/** An inbound HTTP request as a webhook route hands it to the plugin. */
export type InboundRequest = {
  projectId: string;
  accountId: string;
  /** Lower-cased header names; a header sent twice is joined by `, ` as Node does. */
  headers: Readonly<Record<string, string | undefined>>;
  /**
   * The raw body, read on first call (and kept): a plugin that checks a header alone never
   * makes ingress read an unsigned body, so a bad signature is answered before a too-large
   * body would be.
   */
  rawBody(): Promise<Buffer>;
  receivedAt: Date;
};

/** Resolves one of the account's secret refs to its value (`secret:` / `env:`). */
export type ResolveSecret = (ref: SecretRef) => Promise<string>;

/**
 * What a webhook call turned out to be: messages to run, an approver's button press (answered
 * with `body` when the channel needs a particular answer: Discord's deferred update), or a
 * handshake the route answers with `body` as JSON and nothing else (Slack's
 * `url_verification` challenge, Discord's PING).
 */
export type InboundResult =
  | { kind: 'messages'; batch: InboundBatch }
  | { kind: 'approval'; answer: ApproverAnswer; body?: Record<string, unknown> }
  | { kind: 'answer'; body: Record<string, unknown> };

/** The inbound half of a plugin: what its webhook route calls. */
export type InboundAdapter<T extends ChannelType> = {
  /** What carries the signature (a header name), as a refused request's 401 names it. */
  signedBy: string;
  /**
   * Whether the request is signed by the account (raw body, headers, the account's secrets).
   * False is answered 401 before anything is written; a secret that cannot be resolved throws.
   */
  verify(request: InboundRequest, account: AccountOf<T>, secret: ResolveSecret): Promise<boolean>;
  /**
   * Reads the verified raw body into what `normalize` takes, for a channel whose requests are
   * not all JSON (Slack's button presses are a `payload=` form). Throws an `AppError` 400 when
   * it cannot. Absent: the body is JSON (malformed JSON is a 400).
   */
  parse?(raw: Buffer, request: InboundRequest): unknown;
  /**
   * The verified body as the messages it holds (channel-specific part of a
   * {@link ConversationEvent}; ingress adds ids, project, trace and receive time) or, on an
   * account that asks approvers, a button press. Throws `ContractViolationError` naming the
   * bad field when the body is not the channel's shape.
   */
  normalize(body: unknown, account: AccountOf<T>, request: InboundRequest): InboundResult;
  /**
   * The 200 body answering a webhook that carried messages, from the runs it made or found
   * (`duplicate`: at least one was already there). Absent: `{ ok: true, runs }`.
   */
  responseBody?(accepted: { runs: string[]; duplicate: boolean }): Record<string, unknown>;
  /**
   * What a message past an admission limit gets: `refuse` (a 429 or 503 with `Retry-After`
   * and nothing written: the channel delivers it again later) or `absorb` (written, its run
   * delayed) when this request is one the channel would not send again. Absent: `refuse`.
   */
  overload?(account: AccountOf<T>, request: InboundRequest): 'refuse' | 'absorb';
};

/** Where one send goes: the run, its pinned account and the event it answers. */
export type SendTarget<T extends ChannelType> = {
  run: Run;
  account: AccountOf<T>;
  event: ConversationEvent;
  /** The stage's clock, for anything with an expiry (a LINE reply token). */
  now: number;
};

/** How a claimed batch goes out, and whether the channel drops a repeat of that very call. */
export type SendMethod = {
  /** Recorded on the ledger row (`sendMessage`, `reply`, `push`, `callback`, `stored`, ...). */
  name: string;
  /**
   * The channel recognises a repeat of this call (an idempotency key it honours), so a row
   * whose sender died mid-call may be sent again; false makes such a row `uncertain`.
   */
  dedupes: boolean;
};

/** What a send reported back. */
export type SendResult = { method: string; externalMessageId?: string };

/** Who pacing applies to: one account of one project, one conversation. */
export type PaceKey = {
  projectId: string;
  accountId: string;
  conversation: { id: string; kind: 'dm' | 'group' };
};

/** The Redis a sender paces itself with (shared buckets across processes). */
export type PaceContext = { redis: Redis; redisPrefix: string };

/**
 * One account's outbound client, built once per account and credential version by the
 * registry's cache and reused for every send. Every failure it throws is an `AppError`
 * mapped by how to handle it: `RetryAfterError` / a retryable code (not sent, try again),
 * `CHANNEL_UNCERTAIN` (may have gone out: never repeated), `NonRetryableError` (refused).
 */
export type ChannelSender<T extends ChannelType> = {
  /** Chooses the call for a claimed batch (rows in chunk order, at most `batchSize`). */
  methodFor(rows: readonly ClaimedRow[], target: SendTarget<T>): SendMethod;
  /** Sends one claimed batch by `method`. */
  send(rows: readonly ClaimedRow[], method: SendMethod, target: SendTarget<T>): Promise<SendResult>;
  /**
   * Waits for a send slot before rows are claimed (a wait past what a job may hold throws a
   * `RetryAfterError`). Absent: the channel is not paced here.
   */
  pace?(ctx: PaceContext, key: PaceKey): Promise<void>;
  /** Shows the typing / loading indicator for the run's conversation (`capabilities.typing`). */
  typing?(target: SendTarget<T>): Promise<void>;
  /**
   * Asks one approver (a recipient id without the subject prefix) with buttons; returns the
   * channel's message id. Present when the plugin has {@link ApprovalAdapter}.
   */
  askApprover?(recipient: string, prompt: ApprovalPrompt): Promise<{ externalMessageId: string }>;
  /**
   * Tells one member (a recipient id without the subject prefix, as `askApprover` asks one)
   * a plain text, with no buttons: an owner's budget alert. Present with `askApprover`.
   */
  tellMember?(recipient: string, text: string): Promise<{ externalMessageId: string }>;
  /** Answers a button press with a short text the presser sees (best effort). */
  acknowledge?(answer: ApproverAnswer, text: string): Promise<void>;
};

/** An approval prompt as a plugin renders it: the text and the buttons to offer. */
export type ApprovalPrompt = {
  approvalId: string;
  /** Plain text: nothing in it is markup. */
  text: string;
  /** The decisions offered, in order (Reject alone when the arguments could not be shown). */
  buttons: readonly ('approved' | 'rejected')[];
};

/** A button press read from an inbound request. */
export type ApproverAnswer = {
  /** The channel's id for the press, to acknowledge it. */
  answerId: string;
  /** Who pressed, as an ACL subject (`telegram:<user id>`). */
  decidedBy: string;
  /** The approval and decision, or null when the button is not an approval button. */
  action: { approvalId: string; decision: 'approved' | 'rejected' } | null;
};

/**
 * Where a held connection hands what it reads: the same durable accept and approval decision
 * a webhook route uses, wired by the ChannelManager for the account it runs.
 */
export type ConnectionSink = {
  /**
   * Makes the messages durable runs (deduped on each event's external id) and resolves once
   * they are committed: a connection acknowledges upstream only after this resolves.
   */
  messages(batch: InboundBatch): Promise<{ runs: string[]; duplicate: boolean }>;
  /** Decides an approver's button press read off the connection (ACL-checked there). */
  approval(answer: ApproverAnswer): Promise<void>;
  /**
   * Reports the connection's state for the account's status snapshot: `running` once it is
   * receiving, `reconnecting` while it is getting back (a RESUME), `error` with what failed.
   */
  state(
    state: 'running' | 'reconnecting' | 'error',
    error?: { code: string; message: string },
  ): void;
};

/** One open connection, as {@link ConnectionAdapter.open} hands it back. */
export type HeldConnection = {
  /** Closes it; resolves once nothing more will reach the sink. Harmless twice. */
  stop(): Promise<void>;
};

/**
 * A channel whose messages arrive over a connection AwoooP holds (Discord's Gateway, an SMTP
 * listener) rather than on a webhook. The ChannelManager opens one per running account in the
 * `channels` process and closes it when the account stops or its contract changes.
 */
export type ConnectionAdapter<T extends ChannelType> = {
  /** The secret refs `open` needs, resolved by the manager first, in order. */
  credentials(account: AccountOf<T>): readonly SecretRef[];
  /** Opens the account's connection; resolves once it is set up (not necessarily `running`). */
  open(
    account: AccountOf<T>,
    credentials: readonly string[],
    sink: ConnectionSink,
    key: { projectId: string; accountId: string },
  ): Promise<HeldConnection>;
  /**
   * What a message past an admission limit gets (see {@link InboundAdapter.overload}): an
   * SMTP listener refuses (a 4xx makes the sender's relay try again); a connection whose
   * peer never sends a message twice absorbs. Absent: `refuse`.
   */
  overload?: 'refuse' | 'absorb';
};

/** Where an account's webhook is, as {@link ChannelPlugin.register} is told. */
export type RegisterTarget = {
  projectId: string;
  accountId: string;
  /** The path of the account's webhook route (`/webhooks/<type>/<project>/<account>`). */
  webhookPath: string;
};

/** Asking approvers through the channel: a capability a plugin may lack. */
export type ApprovalAdapter = {
  /**
   * The ACL subject prefix of the channel's users (`telegram` for `telegram:<id>`): approvers
   * with such a subject are asked on the project's approvals account.
   */
  subjectPrefix: string;
  /**
   * What a decision made here is recorded as (`approvals.decided_via`); a new channel adds its
   * name to that column's check in a migration.
   */
  via: DecidedVia;
};

/**
 * A channel: its metadata, capabilities and adapters. Registered by its contract `type` in a
 * {@link ChannelRegistry}; a type with no registered plugin is refused at apply. The
 * pipeline never asks which channel it is talking to, only what the plugin can do.
 */
export type ChannelPlugin<T extends ChannelType = ChannelType> = {
  /** The channel contract's `type` this plugin serves. */
  type: T;
  /** A human name, for messages and docs. */
  displayName: string;
  capabilities: ChannelCapabilities;
  /** The markup an account's messages are written in. */
  dialect(account: AccountOf<T>): MarkupDialect;
  /**
   * `store`: answers are kept on the ledger for the client to read and nothing is sent (an
   * API account without a callback), and a failure sends no notice; `send`: they go out.
   */
  delivery(account: AccountOf<T>): 'send' | 'store';
  /**
   * Formats an answer for the channel and splits it into messages of at most `limit`
   * characters (null: one message).
   */
  format(text: string, account: AccountOf<T>, limit: number | null): string[];
  /** Webhook verification and normalization; absent when the channel has no webhook (API). */
  inbound?: InboundAdapter<T>;
  /**
   * The secret refs the account's sender needs. They are resolved before any row is claimed,
   * and their values are part of the sender cache's key, so a rotated secret builds a new one.
   */
  credentials(account: AccountOf<T>): readonly SecretRef[];
  /** Builds the account's sender from its contract and its resolved credentials, in order. */
  createSender(account: AccountOf<T>, credentials: readonly string[]): ChannelSender<T>;
  /** Present when approvers can be asked (with buttons) and answer on this channel. */
  approvals?: ApprovalAdapter;
  /** Present when messages arrive over a connection the ChannelManager holds. */
  connection?: ConnectionAdapter<T>;
  /**
   * Registers with the channel what the platform needs when the account starts (Telegram's
   * `setWebhook` with the webhook's URL and secret token), only when the account's contract
   * asks for it; resolves to the URL registered, or null when it asks for nothing. The
   * ChannelManager calls it on every start, so it must be harmless twice.
   */
  register?(
    account: AccountOf<T>,
    secret: ResolveSecret,
    target: RegisterTarget,
  ): Promise<{ url: string } | null>;
};

/** A plugin whose `type` is not known statically (what the registry hands out). */
export type AnyChannelPlugin = { [T in ChannelType]: ChannelPlugin<T> }[ChannelType];

/** A sender and what it was built for, as the registry hands it out. */
export type AccountSender = {
  plugin: ChannelPlugin;
  sender: ChannelSender<ChannelType>;
  /**
   * The account's typing indicators in this process (see `startProgress`): how many are in
   * flight, and until when none is sent because a recent one was slow or failed.
   */
  typing: { inFlight: number; quietUntil: number };
};

/**
 * The plugins a process knows, keyed by contract type, and the per-account sender cache.
 * Built once per entry point (no module singleton): tests build their own with a fake plugin.
 */
export type ChannelRegistry = {
  /** The plugin for a type; throws `CHANNEL_NOT_SUPPORTED` (non-retryable) when none is. */
  plugin(type: ChannelType): ChannelPlugin;
  /** The plugin for a type, or undefined. */
  find(type: ChannelType): ChannelPlugin | undefined;
  /** Every registered type: apply refuses any other. */
  types(): readonly ChannelType[];
  /**
   * The account's sender, built on first use and reused while the account's contract body
   * and resolved credentials stay the same (see the cache's comment on what invalidates it).
   * Resolves the credentials first: a missing secret throws before anything is claimed.
   */
  sender(
    secret: ResolveSecret,
    key: { projectId: string; accountId: string },
    account: ChannelContract,
  ): Promise<AccountSender>;
};
