import {
  addAccountStats,
  ensureChannelAccount,
  extendWaitingRuns,
  recordRegistration,
  revisionVersion,
  scanChannelAccounts,
  setActualState,
  type ActualState,
} from '../../db/channelAccounts.ts';
import { withProject } from '../../db/withProject.ts';
import { withSweeper } from '../../db/withSweeper.ts';
import type { ChannelContract } from '../contracts/channelContract.ts';
import { AppError } from '../errors.ts';
import type { ContractReader } from '../runs/createContractReader.ts';
import type { ChannelContext } from '../channels/ChannelContext.ts';
import type {
  ApproverAnswer,
  ChannelPlugin,
  ConnectionSink,
  HeldConnection,
} from '../channels/ChannelPlugin.ts';
import type { InboundBatch } from '../channels/inboundTypes.ts';
import type { AccountKey } from '../channels/manager/accountGate.ts';
import { takeChannelStats } from '../channels/manager/channelStats.ts';

/** An account and the channel type its contract has. */
export type ManagedAccount = AccountKey & { channel: ChannelContract };

/** A run whose delivery waits on a stopped account, to be resumed when it starts. */
export type WaitingDelivery = {
  projectId: string;
  runId: string;
  traceId: string;
  notice: boolean;
};

/** What the manager needs besides the channel context. */
export type ChannelManagerDeps = ChannelContext & {
  contracts: ContractReader;
  /** The durable accept a webhook uses (ingress' `acceptInbound`), for a connection's messages. */
  accept(
    account: ManagedAccount,
    batch: InboundBatch,
  ): Promise<{ runs: string[]; duplicate: boolean }>;
  /** Decides an approver's button press read off a connection (`decideFromChannel`). */
  decide(account: ManagedAccount, answer: ApproverAnswer): Promise<void>;
  /** Puts the waiting deliveries of a started account back to work at once. */
  resume(deliveries: readonly WaitingDelivery[]): Promise<void>;
};

/** What one reconcile did, for logs and tests. */
export type ReconcileReport = {
  accounts: number;
  started: number;
  stopped: number;
  failed: number;
};

/** The ChannelManager of the `channels` process. */
export type ChannelManager = {
  /**
   * Brings every account in line with its contract and its operator's wish: creates missing
   * snapshots, (re)starts accounts whose revision or restart request changed, stops stopped
   * ones and those whose contract is gone, and flushes the counters. Calls made while one runs
   * are folded into one more run after it.
   */
  reconcile(): Promise<ReconcileReport>;
  /** Moves the counts kept in Redis into the snapshots. */
  flush(): Promise<void>;
  /** The accounts with a connection open now, `project/account` → contract revision. */
  held(): ReadonlyMap<string, string>;
  /** Closes every connection (marking its account stopped); the manager can reconcile again. */
  stopAll(reason: string): Promise<void>;
};

type Held = {
  key: AccountKey;
  revisionId: string;
  restartSeq: number;
  connection: HeldConnection | null;
  closed: boolean;
  failures: number;
  retryAt: number | null;
  /** State writes reported by the connection, in order. */
  writes: Promise<void>;
};

const idOf = (k: AccountKey) => `${k.projectId}/${k.accountId}`;

/**
 * Builds the ChannelManager: it owns every account of every active channel contract. Each
 * reconcile reads the accounts across projects (ids and states only, as the sweeper's role),
 * then each account's contract under its own project. For a running account it calls the
 * plugin's `register` (Telegram's `setWebhook`, when asked) and, for a plugin with a
 * `connection` adapter, holds one open connection whose sink is the webhooks' durable accept
 * and approval decision. A new contract revision or a restart request closes the connection
 * and opens it again with the revision; a stop, or a contract gone, closes it.
 * Harmless twice: every reconcile compares what it holds (revision, restart number) with
 * Postgres and changes only what differs; state writes are conditional on a change.
 */
export function createChannelManager(deps: ChannelManagerDeps): ChannelManager {
  const held = new Map<string, Held>();
  const seen = new Map<string, AccountKey>();
  let running: Promise<ReconcileReport> | null = null;
  let again = false;

  const setState = async (
    key: AccountKey,
    to: ActualState,
    reason: string,
    extra: { error?: { code: string; message: string }; contractGone?: boolean } = {},
  ) =>
    withProject(deps.pool, key.projectId, (tx) =>
      setActualState(tx, { ...key, to, reason, actor: deps.actor, ...extra }),
    );

  const close = async (entry: Held) => {
    entry.closed = true;
    held.delete(idOf(entry.key));
    try {
      await entry.connection?.stop();
    } catch (error) {
      deps.logger.warn(
        { ...entry.key, err: message(error) },
        'closing a channel connection failed',
      );
    }
    await entry.writes;
  };

  const sinkFor = (entry: Held, account: ManagedAccount): ConnectionSink => {
    const refuseClosed = () => {
      if (entry.closed)
        throw new AppError(
          'CHANNEL_ACCOUNT_STOPPED',
          `channel account "${account.accountId}" was closed; nothing taken`,
          { status: 503 },
        );
    };
    return {
      async messages(batch) {
        refuseClosed();
        return deps.accept(account, batch);
      },
      async approval(answer) {
        refuseClosed();
        await deps.decide(account, answer);
      },
      state(state, error) {
        if (entry.closed) return;
        entry.writes = entry.writes
          .then(async () => {
            await setState(entry.key, state, 'reported by the connection', error ? { error } : {});
          })
          .catch((e: unknown) =>
            deps.logger.warn({ ...entry.key, err: message(e) }, 'recording a channel state failed'),
          );
      },
    };
  };

  const start = async (
    key: AccountKey,
    plugin: ChannelPlugin,
    body: ChannelContract,
    entry: Held,
    resumeWaiting: boolean,
  ) => {
    const secret = (ref: string) => deps.secrets.resolve(key.projectId, ref);
    const account: ManagedAccount = { ...key, channel: body };
    try {
      // The plugin type is known only at run time; each adapter takes its own account shape.
      const p = plugin as ChannelPlugin<ChannelContract['type']>;
      const registered = await p.register?.(body, secret, {
        ...key,
        webhookPath: `/webhooks/${body.type}/${key.projectId}/${key.accountId}`,
      });
      if (registered)
        await withProject(deps.pool, key.projectId, (tx) =>
          recordRegistration(tx, { ...key, url: registered.url }),
        );
      if (p.connection) {
        const credentials = await Promise.all(p.connection.credentials(body).map(secret));
        entry.connection = await p.connection.open(body, credentials, sinkFor(entry, account), key);
        // A connection that was closed while it opened is closed again at once.
        if (entry.closed) await entry.connection.stop();
      } else {
        // Nothing to hold: a webhook account runs once it is registered.
        await setState(key, 'running', 'webhook account');
      }
      entry.failures = 0;
      entry.retryAt = null;
      if (resumeWaiting) {
        const waiting = await withProject(deps.pool, key.projectId, (tx) =>
          extendWaitingRuns(tx, key.accountId),
        );
        if (waiting.length > 0) {
          await deps.resume(
            waiting.map((w) => ({
              projectId: key.projectId,
              runId: w.runId,
              traceId: w.traceId,
              notice: w.failed,
            })),
          );
          deps.logger.info({ ...key, runs: waiting.length }, 'resumed waiting deliveries');
        }
      }
      return true;
    } catch (error) {
      entry.failures += 1;
      entry.retryAt = Date.now() + Math.min(60_000, 1000 * 2 ** entry.failures);
      const code = error instanceof AppError ? error.code : 'CHANNEL_CONNECTION_FAILED';
      deps.logger.warn({ ...key, code, err: message(error) }, 'a channel account failed to start');
      await setState(key, 'error', 'start failed', {
        error: { code, message: message(error) },
      });
      return false;
    }
  };

  const reconcileOnce = async (): Promise<ReconcileReport> => {
    const report: ReconcileReport = { accounts: 0, started: 0, stopped: 0, failed: 0 };
    const { active, known } = await withSweeper(deps.pool, scanChannelAccounts);
    const activeIds = new Set(active.map(idOf));
    for (const a of active) {
      report.accounts += 1;
      const key = { projectId: a.projectId, accountId: a.accountId };
      seen.set(idOf(key), key);
      try {
        const outcome = await reconcileAccount(key, a.revisionId);
        if (outcome === 'started') report.started += 1;
        if (outcome === 'stopped') report.stopped += 1;
        if (outcome === 'failed') report.failed += 1;
      } catch (error) {
        report.failed += 1;
        deps.logger.warn({ ...key, err: message(error) }, 'could not reconcile a channel account');
      }
    }
    // An account whose contract is gone (rolled back to nothing, or its project's contract
    // removed) is stopped.
    for (const k of known) {
      const id = idOf(k);
      if (activeIds.has(id)) continue;
      const entry = held.get(id);
      if (entry) await close(entry);
      if (k.actualState !== 'stopped' || k.contractActive) {
        await setState(k, 'stopped', 'contract gone', { contractGone: true });
        report.stopped += 1;
      }
    }
    await flushOnce();
    return report;
  };

  const reconcileAccount = async (
    key: AccountKey,
    revisionId: string,
  ): Promise<'started' | 'stopped' | 'failed' | 'unchanged'> => {
    const { body, snap } = await withProject(deps.pool, key.projectId, async (tx) => {
      const loaded = await deps.contracts.pinned(tx, {
        projectId: key.projectId,
        kind: 'channel',
        revisionId,
      });
      const version = (await revisionVersion(tx, revisionId)) ?? 0;
      const snap = await ensureChannelAccount(tx, {
        ...key,
        channel: loaded.body.type,
        revisionId,
        revisionVersion: version,
      });
      return { body: loaded.body, snap };
    });
    const id = idOf(key);
    const current = held.get(id);
    if (snap.desiredState === 'stopped') {
      if (current) await close(current);
      return (await setState(key, 'stopped', 'stop requested')) ? 'stopped' : 'unchanged';
    }
    const plugin = deps.channels.find(body.type);
    if (!plugin) {
      await setState(key, 'error', 'no plugin', {
        error: { code: 'CHANNEL_NOT_SUPPORTED', message: `no plugin serves "${body.type}"` },
      });
      return 'failed';
    }
    if (current && current.revisionId === revisionId && current.restartSeq === snap.restartSeq) {
      if (current.retryAt === null || current.retryAt > Date.now()) return 'unchanged';
    }
    const reason = !current
      ? snap.actualState === 'stopped'
        ? 'started'
        : 'taken up by this process'
      : current.restartSeq !== snap.restartSeq
        ? 'restart requested'
        : current.revisionId !== revisionId
          ? `contract revision ${snap.revisionVersion ?? '?'}`
          : 'retrying after an error';
    if (current) await close(current);
    const entry: Held = {
      key,
      revisionId,
      restartSeq: snap.restartSeq,
      connection: null,
      closed: false,
      failures: current?.failures ?? 0,
      retryAt: null,
      writes: Promise.resolve(),
    };
    held.set(id, entry);
    await setState(key, 'starting', reason);
    return (await start(key, plugin, body, entry, snap.actualState === 'stopped'))
      ? 'started'
      : 'failed';
  };

  const flushOnce = async () => {
    for (const key of seen.values()) {
      try {
        const stats = await takeChannelStats(deps.redis, deps.redisPrefix, key);
        if (!stats) continue;
        await withProject(deps.pool, key.projectId, (tx) =>
          addAccountStats(tx, { ...key, ...stats }),
        );
      } catch (error) {
        deps.logger.warn({ ...key, err: message(error) }, 'could not flush channel counts');
      }
    }
  };

  return {
    async reconcile() {
      if (running) {
        again = true;
        return running;
      }
      running = (async () => {
        try {
          let report = await reconcileOnce();
          while (again) {
            again = false;
            report = await reconcileOnce();
          }
          return report;
        } finally {
          running = null;
        }
      })();
      return running;
    },
    flush: flushOnce,
    held: () => new Map([...held].map(([id, h]) => [id, h.revisionId])),
    async stopAll(reason) {
      await running?.catch(() => null);
      for (const entry of [...held.values()]) {
        await close(entry);
        // A webhook account keeps running in `web`; only a held connection stops here.
        if (entry.connection)
          await setState(entry.key, 'stopped', reason).catch((e: unknown) =>
            deps.logger.warn({ ...entry.key, err: message(e) }, 'recording a channel state failed'),
          );
      }
      await flushOnce();
    },
  };
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
