import type { ConversationEvent } from '../contracts/conversationEvent.ts';
import type { Binding, ProjectContract } from '../contracts/projectContract.ts';

// How much each matched field makes a binding more specific: a thread beats a group beats a
// peer beats an account beats a channel, and any sum of lower ones.
const WEIGHT = { thread: 16, group: 8, peer: 4, account: 2, channel: 1 } as const;

/**
 * The agent that answers an event: the most specific binding whose every given field matches
 * (ties go to the earlier binding), else the project's default agent.
 */
export function bindAgent(project: ProjectContract, event: ConversationEvent): string {
  let best: { binding: Binding; score: number } | null = null;
  for (const binding of project.bindings) {
    const score = matchScore(binding, event);
    if (score !== null && (best === null || score > best.score)) best = { binding, score };
  }
  return best?.binding.agent ?? project.defaultAgent;
}

function matchScore(b: Binding, e: ConversationEvent): number | null {
  const c = e.conversation;
  const checks: [keyof typeof WEIGHT, string | undefined, string | undefined][] = [
    ['channel', b.channel, e.channel],
    ['account', b.account, e.accountId],
    ['peer', b.peer, e.sender.id],
    ['group', b.group, c.kind === 'group' ? c.id : undefined],
    ['thread', b.thread, c.threadId],
  ];
  let score = 0;
  for (const [field, want, have] of checks) {
    if (want === undefined) continue;
    if (want !== have) return null;
    score += WEIGHT[field];
  }
  return score;
}

/**
 * The deterministic session key `agent:<agent>:<channel>:<account>:<dm|group>:<id>`, with
 * `:<thread>` appended inside a thread: the same conversation always maps to one session.
 */
export function sessionKeyFor(agent: string, event: ConversationEvent): string {
  const c = event.conversation;
  const key = `agent:${agent}:${event.channel}:${event.accountId}:${c.kind}:${c.id}`;
  return c.threadId ? `${key}:${c.threadId}` : key;
}
