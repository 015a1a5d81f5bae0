import { z } from 'zod';
import { telegramUpdate } from '../fakes/channelPayloads.ts';
import { messageCreate } from '../fakes/discordPayloads.ts';
import { slackEventCallback, slackHeaders } from '../fakes/slackPayloads.ts';

/** Private chat ids start here: one fresh chat per Telegram update. */
export const CHAT_BASE = 5_000_000;

/** Discord DM channel ids start here (snowflake-shaped): one fresh channel per message. */
const DISCORD_CHANNEL_BASE = 1_500_000_000_000_000_000n;

/**
 * The channels the load speaks: webhooks of two platforms, messages dispatched on Discord's
 * Gateway (which the platform's `channels` process holds), and the HTTP API.
 */
export type LoadChannel = 'api' | 'telegram' | 'slack' | 'discord';

/** One message the load sent (however many times), and what the platform said to it. */
export type LoadItem = {
  seq: number;
  channel: LoadChannel;
  /**
   * The Telegram chat (one per update), the Slack direct-message channel (one per event), or
   * the API conversation id.
   */
  conversation: string;
  /** Every run id a 2xx answer named for this message: more than one is a duplicate run. */
  runIds: Set<string>;
  /** Requests sent for it: first copy, retries, duplicates. */
  attempts: number;
  /** Answered 2xx at least once. */
  accepted: boolean;
  duplicate?: 'concurrent' | 'late';
};

/** Counts of what the load sent and got back. */
export type LoadCounts = {
  requests: number;
  ok: number;
  /** Answers by status (`201`, `503`) or error name (`TimeoutError`, `TypeError`). */
  byStatus: Record<string, number>;
  retries: number;
  duplicatesConcurrent: number;
  duplicatesLate: number;
  /** 2xx answers that named no run (a Telegram update the platform ignored). */
  acceptedWithoutRun: number;
};

/** A running load: `done` settles once the load, its retries and late duplicates are over. */
export type LoadDriver = {
  items: LoadItem[];
  counts: LoadCounts;
  inFlight(): number;
  done: Promise<void>;
};

/** Where and how hard {@link driveLoad} sends. */
export type LoadOptions = {
  baseUrl: string;
  projectId: string;
  apiKey: string;
  webhookSecret: string;
  /** The Telegram channel account of the project. */
  telegramAccount: string;
  /** The Slack channel account of the project and its signing secret. */
  slackAccount: string;
  slackSigningSecret: string;
  /** Messages started per second. */
  rate: number;
  durationMs: number;
  /** Share sent through the Telegram webhook. */
  telegramShare: number;
  /** Share sent through the Slack Events API webhook. */
  slackShare: number;
  /** Share dispatched on the Discord Gateway (the rest, after the others', is API). */
  discordShare: number;
  /**
   * Dispatches a MESSAGE_CREATE on the fake Gateway (kept in its session, so a RESUME
   * replays it). Discord answers nothing back: a dispatched message counts as accepted, and
   * its run is found by its channel once the load is over.
   */
  dispatchDiscord: (message: Record<string, unknown>) => void;
  /** Share of webhooks sent again: half at the same moment, half 1-5 s later. */
  duplicateShare: number;
  /** A failed request is retried (as Telegram does) until this long after the load ends. */
  retryForMs: number;
  requestTimeoutMs: number;
  random: () => number;
};

const ApiAnswer = z.object({ run_id: z.string() });
const WebhookAnswer = z.object({ ok: z.literal(true), runs: z.array(z.string()) });

/**
 * Sends a steady stream of messages at `rate` per second for `durationMs`, each a fresh
 * conversation: API messages (`POST /v1/projects/:p/messages`, Bearer key, an Idempotency-Key
 * per message so a retry cannot make a second run), Telegram webhooks (a real update with a
 * fresh `update_id` and chat) and Slack Events API callbacks (a direct message with a fresh
 * `event_id` and channel, signed again on every try as Slack does, its retries numbered in
 * `X-Slack-Retry-Num`), and Discord direct messages dispatched on the Gateway (a fresh message
 * id and channel; a duplicate is the same dispatch again). A request that fails (5xx, connection refused, timeout) is not
 * accepted and is retried with backoff; a share of webhooks is sent twice on purpose.
 */
export function driveLoad(o: LoadOptions): LoadDriver {
  const items: LoadItem[] = [];
  const counts: LoadCounts = {
    requests: 0,
    ok: 0,
    byStatus: {},
    retries: 0,
    duplicatesConcurrent: 0,
    duplicatesLate: 0,
    acceptedWithoutRun: 0,
  };
  const pending = new Set<Promise<void>>();
  let inFlight = 0;
  const startedAt = Date.now();
  const loadEndsAt = startedAt + o.durationMs;
  const retryUntil = loadEndsAt + o.retryForMs;
  const track = (p: Promise<void>) => {
    pending.add(p);
    void p.finally(() => pending.delete(p));
  };
  const later = (ms: number, fn: () => Promise<void>) =>
    track(new Promise((r) => setTimeout(r, ms)).then(fn));

  const request = (item: LoadItem) => {
    if (item.channel === 'slack') {
      const body = JSON.stringify(
        slackEventCallback({
          eventId: `EvCHAOS${item.seq}`,
          kind: 'im',
          channel: item.conversation,
          text: `chaos ${item.seq}`,
        }),
      );
      return {
        url: `${o.baseUrl}/webhooks/slack/${o.projectId}/${o.slackAccount}`,
        headers: {} as Record<string, string>,
        body,
      };
    }
    if (item.channel === 'api') {
      return {
        url: `${o.baseUrl}/v1/projects/${o.projectId}/messages`,
        headers: {
          'content-type': 'application/json',
          authorization: `Bearer ${o.apiKey}`,
          'idempotency-key': `chaos-${item.seq}`,
        },
        body: JSON.stringify({
          text: `chaos ${item.seq}`,
          conversation_id: item.conversation,
          sender_id: item.conversation,
        }),
      };
    }
    const update = telegramUpdate({
      updateId: item.seq,
      chatId: Number(item.conversation),
      text: `chaos ${item.seq}`,
    });
    return {
      url: `${o.baseUrl}/webhooks/telegram/${o.projectId}/${o.telegramAccount}`,
      headers: {
        'content-type': 'application/json',
        'x-telegram-bot-api-secret-token': o.webhookSecret,
      },
      body: JSON.stringify(update),
    };
  };
  const bodies = new Map<number, ReturnType<typeof request>>();

  /** One POST; true when answered 2xx, false when it may be retried, null when refused. */
  const attempt = async (item: LoadItem): Promise<boolean | null> => {
    // The same bytes every time: a duplicate or a retry is exactly what was sent first.
    const req = bodies.get(item.seq) ?? request(item);
    bodies.set(item.seq, req);
    // Slack signs each delivery with the time it is sent and numbers its retries.
    const headers =
      item.channel === 'slack'
        ? {
            ...slackHeaders(req.body, o.slackSigningSecret),
            ...(item.attempts > 0 ? { 'x-slack-retry-num': String(item.attempts) } : {}),
          }
        : req.headers;
    item.attempts += 1;
    counts.requests += 1;
    inFlight += 1;
    let key = 'Error';
    try {
      const res = await fetch(req.url, {
        method: 'POST',
        headers,
        body: req.body,
        signal: AbortSignal.timeout(o.requestTimeoutMs),
      });
      const text = await res.text();
      key = String(res.status);
      if (res.ok) {
        const runs = runIdsOf(item.channel, text);
        if (runs.length === 0) counts.acceptedWithoutRun += 1;
        for (const id of runs) item.runIds.add(id);
        item.accepted = true;
        counts.ok += 1;
        return true;
      }
      return res.status >= 500 || res.status === 429 ? false : null;
    } catch (error) {
      if (error instanceof Error) key = error.name;
      return false;
    } finally {
      inFlight -= 1;
      counts.byStatus[key] = (counts.byStatus[key] ?? 0) + 1;
    }
  };

  /** Sends until answered 2xx or refused, backing off as a channel's retries do. */
  const deliver = async (item: LoadItem, tries = 0): Promise<void> => {
    const ok = await attempt(item);
    if (ok !== false || item.accepted) return;
    const delay = Math.min(4000, 250 * 2 ** tries) * (0.5 + o.random());
    if (Date.now() + delay > retryUntil) return;
    counts.retries += 1;
    later(delay, () => deliver(item, tries + 1));
  };

  const start = (seq: number) => {
    const roll = o.random();
    const channel: LoadChannel =
      roll < o.telegramShare
        ? 'telegram'
        : roll < o.telegramShare + o.slackShare
          ? 'slack'
          : roll < o.telegramShare + o.slackShare + o.discordShare
            ? 'discord'
            : 'api';
    const item: LoadItem = {
      seq,
      channel,
      conversation:
        channel === 'telegram'
          ? String(CHAT_BASE + seq)
          : channel === 'slack'
            ? `DCHAOS${seq}`
            : channel === 'discord'
              ? String(DISCORD_CHANNEL_BASE + BigInt(seq))
              : `chaos-${seq}`,
      runIds: new Set(),
      attempts: 0,
      accepted: false,
    };
    items.push(item);
    if (channel === 'discord') {
      // A direct message from a person in a channel of its own; a duplicate is the same
      // dispatch again (as a replay after RESUME is), with the same message id.
      const message = messageCreate({
        id: String(DISCORD_CHANNEL_BASE + BigInt(seq) + 7n),
        channelId: item.conversation,
        content: `chaos ${item.seq}`,
      });
      const send = () => {
        item.attempts += 1;
        counts.requests += 1;
        o.dispatchDiscord(message);
      };
      send();
      item.accepted = true;
      const dup = o.random();
      if (dup < o.duplicateShare / 2) {
        item.duplicate = 'concurrent';
        counts.duplicatesConcurrent += 1;
        send();
      } else if (dup < o.duplicateShare) {
        item.duplicate = 'late';
        counts.duplicatesLate += 1;
        later(1000 + o.random() * 4000, () => Promise.resolve(send()));
      }
      return;
    }
    track(deliver(item));
    if (channel === 'api') return;
    const dup = o.random();
    if (dup < o.duplicateShare / 2) {
      item.duplicate = 'concurrent';
      counts.duplicatesConcurrent += 1;
      track(attempt(item).then(() => {}));
    } else if (dup < o.duplicateShare) {
      item.duplicate = 'late';
      counts.duplicatesLate += 1;
      later(1000 + o.random() * 4000, () => attempt(item).then(() => {}));
    }
  };

  const done = new Promise<void>((resolve) => {
    let started = 0;
    const tick = setInterval(() => {
      const now = Date.now();
      const due = Math.floor((Math.min(now, loadEndsAt) - startedAt) * (o.rate / 1000));
      while (started < due) start((started += 1));
      if (now < loadEndsAt) return;
      clearInterval(tick);
      void (async () => {
        while (pending.size > 0) await Promise.allSettled([...pending]);
        resolve();
      })();
    }, 5);
  });
  return { items, counts, inFlight: () => inFlight, done };
}

function runIdsOf(channel: LoadItem['channel'], text: string): string[] {
  try {
    const body: unknown = JSON.parse(text);
    if (channel === 'api') return [ApiAnswer.parse(body).run_id];
    return WebhookAnswer.parse(body).runs;
  } catch {
    return [];
  }
}
