import { createHash } from 'node:crypto';
import type { MigrationMode } from '../contracts/common.ts';

/** Whether a run may speak on its channel, and why. */
export type ModeDecision = { mode: MigrationMode; live: boolean; reason: string };

/**
 * What the flow's migration mode means for one peer. Shadow records and never sends. Canary
 * sends to allow-listed peers (`<channel>:<id>` or the bare id) and to a stable hash
 * percentage of the rest — the same peer is always in or always out — and records the others
 * as shadow. The other modes answer (their tool limits are the gateway's).
 */
export function decideMode(
  state: { mode: MigrationMode; canary: Record<string, unknown> },
  peer: { projectId: string; flow: string; channel: string; senderId: string },
): ModeDecision {
  if (state.mode === 'shadow')
    return { mode: 'shadow', live: false, reason: 'shadow: recorded only' };
  if (state.mode !== 'canary') return { mode: state.mode, live: true, reason: state.mode };
  const allow = Array.isArray(state.canary.allowPeers)
    ? (state.canary.allowPeers as unknown[])
    : [];
  if (allow.includes(`${peer.channel}:${peer.senderId}`) || allow.includes(peer.senderId)) {
    return { mode: 'canary', live: true, reason: 'canary: allow-listed peer' };
  }
  const percent = typeof state.canary.percent === 'number' ? state.canary.percent : 0;
  const bucket = canaryBucket(`${peer.projectId}:${peer.flow}:${peer.channel}:${peer.senderId}`);
  return bucket < percent
    ? { mode: 'canary', live: true, reason: `canary: bucket ${bucket} < ${percent}%` }
    : {
        mode: 'canary',
        live: false,
        reason: `canary: bucket ${bucket} >= ${percent}%, recorded only`,
      };
}

/** A peer's stable bucket 0-99. */
export function canaryBucket(key: string): number {
  return createHash('sha256').update(key).digest().readUInt32BE(0) % 100;
}
