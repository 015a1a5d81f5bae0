import type { CommonQueryMethods } from 'slonik';
import {
  channelTypeOf,
  listAccountTransitions,
  listChannelAccounts,
  type ChannelAccountRow,
  type ChannelAccountTransition,
} from '../../db/channelAccounts.ts';
import { listActive } from '../../db/contractRevisions.ts';

/** One account as the API and the CLI show it. */
export type ChannelAccountView = {
  account: string;
  channel: string;
  /** What the operator asked for. */
  desired: 'running' | 'stopped';
  /** What the channels process last reported; null before it has seen the account. */
  state: ChannelAccountRow['actualState'] | null;
  stateChangedAt: string | null;
  /** The contract revision the account runs (null once its contract is gone). */
  revision: { id: string; version: number | null } | null;
  contractActive: boolean;
  registeredUrl: string | null;
  lastInboundAt: string | null;
  lastOutboundAt: string | null;
  lastError: { code: string; message: string | null; at: string | null } | null;
  counts: { inbound: number; outbound: number; errors: number };
  history: {
    at: string;
    kind: ChannelAccountTransition['kind'];
    from: string | null;
    to: string;
    reason: string;
    actor: string;
    error?: unknown;
  }[];
};

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

/**
 * Every account of the project: each active channel contract, with its snapshot when the
 * channels process has made one, and the snapshots of accounts whose contract is gone. With
 * `accountId`, that account alone (empty when it is neither).
 */
export async function describeChannelAccounts(
  tx: CommonQueryMethods,
  { accountId, historyLimit = 20 }: { accountId?: string; historyLimit?: number } = {},
): Promise<ChannelAccountView[]> {
  const active = (await listActive(tx, { kind: 'channel' })).filter(
    (a) => accountId === undefined || a.name === accountId,
  );
  const rows = new Map(
    (await listChannelAccounts(tx))
      .filter((r) => accountId === undefined || r.accountId === accountId)
      .map((r) => [r.accountId, r]),
  );
  const names = [...new Set([...active.map((a) => a.name), ...rows.keys()])].sort();
  const views: ChannelAccountView[] = [];
  for (const name of names) {
    const pointer = active.find((a) => a.name === name);
    const row = rows.get(name);
    const history = row ? await listAccountTransitions(tx, name, historyLimit) : [];
    views.push({
      account: name,
      channel:
        row?.channel ?? (pointer ? await channelTypeOf(tx, pointer.revisionId) : null) ?? 'unknown',
      desired: row?.desiredState ?? 'running',
      state: row ? row.actualState : null,
      stateChangedAt: row ? iso(row.stateChangedAt) : null,
      revision: pointer
        ? { id: pointer.revisionId, version: pointer.version }
        : row?.revisionId && row.contractActive
          ? { id: row.revisionId, version: row.revisionVersion }
          : null,
      contractActive: pointer !== undefined,
      registeredUrl: row?.registeredUrl ?? null,
      lastInboundAt: iso(row?.lastInboundAt ?? null),
      lastOutboundAt: iso(row?.lastOutboundAt ?? null),
      lastError: row?.lastErrorCode
        ? { code: row.lastErrorCode, message: row.lastErrorMessage, at: iso(row.lastErrorAt) }
        : null,
      counts: {
        inbound: row?.inboundCount ?? 0,
        outbound: row?.outboundCount ?? 0,
        errors: row?.errorCount ?? 0,
      },
      history: history.map((h) => ({
        at: new Date(h.at).toISOString(),
        kind: h.kind,
        from: h.fromState,
        to: h.toState,
        reason: h.reason,
        actor: h.actor,
        ...(h.detail.code ? { error: h.detail } : {}),
      })),
    });
  }
  return views;
}
