import { canonicalJson, sha256Hex } from '../contracts/canonicalJson.ts';
import type { ChannelContract } from '../contracts/channelContract.ts';
import type { ChannelType } from '../contracts/common.ts';
import { NonRetryableError } from '../errors.ts';
import type {
  AccountSender,
  AnyChannelPlugin,
  ChannelPlugin,
  ChannelRegistry,
  ResolveSecret,
} from './ChannelPlugin.ts';

/** Past this many cached senders the cache starts over (accounts are few; this bounds a leak). */
const MAX_CACHED_SENDERS = 10_000;

/**
 * A registry of channel plugins, keyed by their contract `type` (two plugins for one type is a
 * programming error and throws), with the per-account sender cache. One per process, built in
 * `ops/` (or by a test, with the plugins it needs): registering a plugin is what makes a type
 * receivable, sendable and accepted by apply.
 */
export function createChannelRegistry(plugins: readonly AnyChannelPlugin[]): ChannelRegistry {
  const byType = new Map<ChannelType, ChannelPlugin>();
  for (const plugin of plugins) {
    if (byType.has(plugin.type)) throw new Error(`two channel plugins for "${plugin.type}"`);
    byType.set(plugin.type, plugin as ChannelPlugin);
  }
  // The sender cache, one entry per project and account. An entry is reused only while its
  // fingerprint matches: the SHA-256 of the account's contract body (canonical JSON) and of
  // its resolved credential values. So a re-applied or rolled-back contract that changes the
  // account (a new API root, another token ref) and a rotated secret (seen once the secret
  // resolver's own cache expires, 30 s) each build a new sender, which replaces the old one;
  // an unchanged account keeps its sender (and its HTTP agent) across runs. A sender holds no
  // open connection of its own, so the replaced one needs no closing.
  const senders = new Map<string, { fingerprint: string; built: AccountSender }>();

  const find = (type: ChannelType) => byType.get(type);
  const plugin = (type: ChannelType) => {
    const found = byType.get(type);
    if (!found) {
      throw new NonRetryableError(
        'CHANNEL_NOT_SUPPORTED',
        `no channel plugin is registered for "${type}"`,
      );
    }
    return found;
  };

  return {
    plugin,
    find,
    types: () => [...byType.keys()],
    async sender(
      secret: ResolveSecret,
      key: { projectId: string; accountId: string },
      account: ChannelContract,
    ): Promise<AccountSender> {
      const found = plugin(account.type);
      const credentials: string[] = [];
      for (const ref of found.credentials(account)) credentials.push(await secret(ref));
      const fingerprint = sha256Hex(canonicalJson({ account, credentials }));
      const cacheKey = `${key.projectId}\u0000${key.accountId}`;
      const hit = senders.get(cacheKey);
      if (hit && hit.fingerprint === fingerprint && hit.built.plugin === found) return hit.built;
      const built: AccountSender = {
        plugin: found,
        sender: found.createSender(account, credentials),
        typing: { inFlight: 0, quietUntil: 0 },
      };
      if (senders.size >= MAX_CACHED_SENDERS) senders.clear();
      senders.set(cacheKey, { fingerprint, built });
      return built;
    },
  };
}
