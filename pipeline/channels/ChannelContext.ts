import type { Redis } from 'ioredis';
import type { Bulkheads } from '../bulkheads/createBulkheads.ts';
import type { Context } from '../context.ts';
import type { SecretResolver } from '../secrets/createSecretResolver.ts';
import type { ChannelRegistry } from './ChannelPlugin.ts';

/**
 * What sending through a channel needs: the base context, Redis for pacing, the secret
 * resolver for credentials, the registry (plugins and their cached senders) and the clock.
 * The stage context is one; the channel code asks for no more.
 */
export type ChannelContext = Context & {
  redis: Redis;
  /** Prefix of every Redis key this process writes (counters, pacing). */
  redisPrefix: string;
  secrets: SecretResolver;
  /** The channel plugins this process knows, and their per-account senders. */
  channels: ChannelRegistry;
  /** Who acts, in the audit trail (`worker:deliver`). */
  actor: string;
  now: () => number;
  /**
   * Shares of concurrency per project and per outside dependency: a send takes a place in its
   * account's share first. Absent (a CLI's one-off send), sends take none.
   */
  bulkheads?: Bulkheads;
};
