import type { DatabasePool } from 'slonik';
import { withProject } from '../db/withProject.ts';
import type { ChannelContract } from '../pipeline/contracts/channelContract.ts';
import { ProjectId } from '../pipeline/contracts/common.ts';
import { NotFoundError } from '../pipeline/errors.ts';
import type { ContractReader } from '../pipeline/runs/createContractReader.ts';

/** Finds a project's channel account of one type, as the webhook routes need it. */
export type AccountLookup = <T extends ChannelContract['type']>(
  projectId: string,
  accountId: string,
  type: T,
) => Promise<Extract<ChannelContract, { type: T }>>;

/**
 * A lookup over the active channel contracts, cached for `ttlMs` so a burst of webhooks does
 * not read the contract per request; an activation is seen within that time. An unknown
 * project, an unknown account and an account of another type are all the same 404.
 */
export function createAccountLookup({
  pool,
  contracts,
  ttlMs = 5000,
}: {
  pool: DatabasePool;
  contracts: ContractReader;
  ttlMs?: number;
}): AccountLookup {
  const cache = new Map<string, { value: ChannelContract | null; until: number }>();
  return async (projectId, accountId, type) => {
    const notFound = () =>
      new NotFoundError(
        'ACCOUNT_NOT_FOUND',
        `no ${type} account "${accountId}" in project "${projectId}"`,
      );
    if (!ProjectId.safeParse(projectId).success || !/^[a-z][a-z0-9_-]{0,62}$/.test(accountId)) {
      throw notFound();
    }
    const key = `${projectId}/${accountId}`;
    let hit = cache.get(key);
    if (!hit || hit.until < Date.now()) {
      const active = await withProject(pool, projectId, (tx) =>
        contracts.active(tx, { projectId, kind: 'channel', name: accountId }),
      );
      hit = { value: active?.body ?? null, until: Date.now() + ttlMs };
      if (cache.size > 10_000) cache.clear();
      cache.set(key, hit);
    }
    if (!hit.value || hit.value.type !== type) throw notFound();
    return hit.value as Extract<ChannelContract, { type: typeof type }>;
  };
}
