import type { LoadItem } from './driveLoad.ts';
import type { ChaosRun } from './readChaosRuns.ts';

/**
 * One message a fake channel received: a Telegram chat or a Slack channel (the load gives
 * every message a conversation of its own, so the two never share an id).
 */
export type ReceivedMessage = { chat_id: string; text: string };

/** One accepted message that went wrong, to dig into. */
export type Finding = {
  seq: number;
  channel: LoadItem['channel'];
  conversation: string;
  runIds: string[];
  state: string | null;
  reason: string;
  messages: number;
};

/** The verdict of a chaos run. */
export type ChaosTally = {
  accepted: number;
  completed: number;
  lost: number;
  duplicated: number;
  failed_with_code: number;
  /** Completed chat runs with no message whose ledger says `uncertain` (never re-sent). */
  uncertain: number;
  failedByCode: Record<string, number>;
  /** Failed live chat runs whose chat got no failure notice (and no uncertain row). */
  noticeMissing: number;
  /** Runs in Postgres no 2xx answer named (their request failed, or was never retried). */
  unacceptedRuns: { total: number; byState: Record<string, number> };
  /** Messages the fake received, by kind (reply, failure notice, status note, other). */
  messages: Record<string, number>;
  lostRuns: Finding[];
  duplicatedRuns: Finding[];
};

const SAMPLE = 20;

/**
 * Judges a chaos run from what the load was told (accepted messages and their run ids), what
 * Postgres holds (each run's state and ledger) and what the channel received (messages per
 * chat). Lost: an accepted message whose run is missing or not terminal, or a completed
 * Telegram or Slack run whose chat got nothing (unless its ledger row is `uncertain`, counted
 * apart).
 * Duplicated: an accepted message answered with two run ids, a conversation with two runs, or
 * a chat that received more than one message.
 */
export function tallyChaos({
  items,
  runs,
  received,
  replyPrefix,
  statusText,
}: {
  items: readonly LoadItem[];
  runs: readonly ChaosRun[];
  received: readonly ReceivedMessage[];
  /** How a model reply starts (the echo model answers `echo: …`). */
  replyPrefix: string;
  /** The channel's status note text. */
  statusText: string;
}): ChaosTally {
  const byRun = new Map(runs.map((r) => [r.runId, r]));
  const itemByConversation = new Map(items.map((i) => [i.conversation, i]));
  const runsByConversation = new Map<string, ChaosRun[]>();
  for (const r of runs) {
    const id = r.conversationKey.split('/')[3] ?? '';
    runsByConversation.set(id, [...(runsByConversation.get(id) ?? []), r]);
  }
  const perChat = new Map<string, number>();
  const messages: Record<string, number> = {};
  for (const m of received) {
    perChat.set(m.chat_id, (perChat.get(m.chat_id) ?? 0) + 1);
    const kind = m.text.startsWith(replyPrefix)
      ? 'reply'
      : m.text === statusText
        ? 'status'
        : /could not finish/.test(m.text)
          ? 'failure'
          : 'other';
    messages[kind] = (messages[kind] ?? 0) + 1;
  }

  const tally: ChaosTally = {
    accepted: 0,
    completed: 0,
    lost: 0,
    duplicated: 0,
    failed_with_code: 0,
    uncertain: 0,
    failedByCode: {},
    noticeMissing: 0,
    unacceptedRuns: { total: 0, byState: {} },
    messages,
    lostRuns: [],
    duplicatedRuns: [],
  };
  const named = new Set<string>();
  for (const item of items) {
    for (const id of item.runIds) named.add(id);
    if (!item.accepted) continue;
    tally.accepted += 1;
    const runIds = [...item.runIds];
    const run = byRun.get(runIds[0] ?? '');
    const chatMessages = item.channel !== 'api' ? (perChat.get(item.conversation) ?? 0) : 0;
    const finding = (reason: string): Finding => ({
      seq: item.seq,
      channel: item.channel,
      conversation: item.conversation,
      runIds,
      state: run?.state ?? null,
      reason,
      messages: chatMessages,
    });
    const lose = (reason: string) => {
      tally.lost += 1;
      if (tally.lostRuns.length < SAMPLE) tally.lostRuns.push(finding(reason));
    };

    const dupReasons = [
      ...(runIds.length > 1 ? [`answered with ${runIds.length} run ids`] : []),
      ...((runsByConversation.get(item.conversation)?.length ?? 0) > 1
        ? [`${runsByConversation.get(item.conversation)!.length} runs in the conversation`]
        : []),
      ...(chatMessages > 1 ? [`${chatMessages} messages in the chat`] : []),
    ];
    if (dupReasons.length > 0) {
      tally.duplicated += 1;
      if (tally.duplicatedRuns.length < SAMPLE)
        tally.duplicatedRuns.push(finding(dupReasons.join('; ')));
    }

    if (!run) {
      lose(runIds.length === 0 ? 'accepted without a run id' : 'run not in Postgres');
      continue;
    }
    if (run.state === 'COMPLETED') tally.completed += 1;
    else if (run.state === 'FAILED') {
      tally.failed_with_code += 1;
      const code = run.failureCode ?? 'UNKNOWN';
      tally.failedByCode[code] = (tally.failedByCode[code] ?? 0) + 1;
    } else {
      lose(`still ${run.state}`);
      continue;
    }
    if (item.channel === 'api' || chatMessages > 0) continue;
    const uncertain = (run.ledger.uncertain ?? 0) > 0;
    if (run.state === 'COMPLETED') {
      if (uncertain) tally.uncertain += 1;
      else lose(`completed, no message (ledger ${JSON.stringify(run.ledger)})`);
    } else if (run.live === true && !uncertain) {
      tally.noticeMissing += 1;
    }
  }
  for (const r of runs) {
    if (named.has(r.runId)) continue;
    tally.unacceptedRuns.total += 1;
    tally.unacceptedRuns.byState[r.state] = (tally.unacceptedRuns.byState[r.state] ?? 0) + 1;
  }
  // A chat of a message the load never saw accepted still must not hear twice.
  for (const [chat, n] of perChat) {
    const item = itemByConversation.get(chat);
    if (n > 1 && item && !item.accepted) {
      tally.duplicated += 1;
      if (tally.duplicatedRuns.length < SAMPLE) {
        tally.duplicatedRuns.push({
          seq: item.seq,
          channel: item.channel,
          conversation: chat,
          runIds: (runsByConversation.get(chat) ?? []).map((r) => r.runId),
          state: null,
          reason: `${n} messages in the chat of an unaccepted update`,
          messages: n,
        });
      }
    }
  }
  return tally;
}
