import type { Redis } from 'ioredis';
import type { DatabasePool } from 'slonik';
import { appendAudit } from '../../db/auditEvents.ts';
import {
  getChannelAccount,
  requestDesiredState,
  requestRestart,
} from '../../db/channelAccounts.ts';
import { withProject } from '../../db/withProject.ts';
import { NotFoundError } from '../errors.ts';
import type { ContractReader } from '../runs/createContractReader.ts';
import { publishDesiredState } from '../channels/manager/accountGate.ts';
import { describeChannelAccounts, type ChannelAccountView } from './describeChannelAccounts.ts';

/** What an operator can ask of one account. */
export const ACCOUNT_ACTIONS = ['start', 'stop', 'restart'] as const;
export type AccountAction = (typeof ACCOUNT_ACTIONS)[number];

/** What a start / stop / restart needs. */
export type AccountRequestDeps = {
  pool: DatabasePool;
  redis: Redis;
  redisPrefix: string;
  contracts: ContractReader;
};

/**
 * Records an operator's start, stop or restart of one account (the API's and the CLI's
 * path), with its history row and an audit row, and publishes the account's flag so intake
 * and sends see a stop at once; the channels process, notified by the same commit, opens or
 * closes what it holds. `stop` is allowed for an account whose contract is gone (it has a
 * snapshot); `start` and `restart` need an active contract. An unknown account is 404
 * `ACCOUNT_NOT_FOUND` and changes nothing.
 * Harmless twice: a start of a running account or a stop of a stopped one changes nothing and
 * writes no audit row; each restart is a new request and reopens the account once more.
 */
export async function requestAccountState(
  deps: AccountRequestDeps,
  {
    projectId,
    accountId,
    action,
    actor,
  }: { projectId: string; accountId: string; action: AccountAction; actor: string },
): Promise<{ changed: boolean; account: ChannelAccountView }> {
  const { changed, desired } = await withProject(deps.pool, projectId, async (tx) => {
    const active = /^[a-z][a-z0-9_-]{0,62}$/.test(accountId)
      ? await deps.contracts.active(tx, { projectId, kind: 'channel', name: accountId })
      : null;
    const row = active ? null : await getChannelAccount(tx, accountId);
    if (!active && (!row || action !== 'stop')) {
      throw new NotFoundError(
        'ACCOUNT_NOT_FOUND',
        row
          ? `channel account "${accountId}" has no active contract in project "${projectId}": only stop applies`
          : `no channel account "${accountId}" in project "${projectId}"`,
      );
    }
    const channel = active?.body.type ?? row!.channel;
    const key = { projectId, accountId, channel, actor };
    let changed: boolean;
    if (action === 'restart') {
      await requestDesiredState(tx, { ...key, desired: 'running' });
      await requestRestart(tx, key);
      changed = true;
    } else {
      changed = await requestDesiredState(tx, {
        ...key,
        desired: action === 'start' ? 'running' : 'stopped',
      });
    }
    if (changed) {
      await appendAudit(tx, {
        projectId,
        chain: `channel:${accountId}`,
        actor,
        action: `channel.${action}`,
        subject: `channel:${accountId}`,
        detail: { channel },
      });
    }
    return { changed, desired: action === 'stop' ? ('stopped' as const) : ('running' as const) };
  });
  await publishDesiredState(deps, { projectId, accountId }, desired);
  const [account] = await withProject(deps.pool, projectId, (tx) =>
    describeChannelAccounts(tx, { accountId }),
  );
  return { changed, account: account! };
}
