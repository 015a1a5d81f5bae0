import { createHmac, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import type {
  ChannelPlugin,
  ConnectionSink,
  AccountOf,
} from '../../pipeline/channels/ChannelPlugin.ts';
import { parseContract } from '../../pipeline/contracts/formatIssues.ts';
import { formatForChannel } from '../../pipeline/sanitize/formatForChannel.ts';

/** A message the toy channel "sent": kept in memory for the test to read. */
export type MemorySent = {
  accountId: string;
  to: string;
  texts: string[];
  /** The bot token the sender was built with (to see a rotated secret take effect). */
  token: string;
  messageId: string;
};

/** One connection the toy channel's "server" holds open for the manager. */
export type MemoryConnection = {
  accountId: string;
  projectId: string;
  token: string;
  account: AccountOf<'slack'>;
  sink: ConnectionSink;
  open: boolean;
};

/** What a test pushes into an open connection, as the channel's server would. */
export type MemoryPush = { id: string; from: string; chat: string; text: string };

/** The toy channel's webhook body. */
const MemoryWebhook = z.strictObject({
  id: z.string().min(1),
  from: z.string().min(1),
  chat: z.string().min(1),
  text: z.string(),
});

/** The toy channel's signature: hex HMAC-SHA256 of the raw body with the signing secret. */
export function memorySignature(raw: string, secret: string): string {
  return createHmac('sha256', secret).update(raw).digest('hex');
}

/**
 * A toy channel plugin that lives in memory, registered by a test under a contract type that
 * has no built-in plugin (`slack`, whose contract carries a signing secret and a bot token):
 * webhooks signed by `x-memory-signature`, answers appended to `outbox`, two rows a call,
 * deduped by row id (so a takeover may resend). `built` counts the senders built.
 */
export function createMemoryChannel(): {
  plugin: ChannelPlugin<'slack'>;
  outbox: MemorySent[];
  built: () => number;
  /** Every connection the manager opened, in order (closed ones say `open: false`). */
  connections: MemoryConnection[];
  /**
   * Pushes a message into the account's open connection, as the channel's server would, and
   * resolves once the sink took it durably (throws when no connection is open or it refused).
   */
  push(accountId: string, message: MemoryPush): Promise<{ runs: string[]; duplicate: boolean }>;
} {
  const outbox: MemorySent[] = [];
  const connections: MemoryConnection[] = [];
  const seen = new Set<string>();
  let built = 0;
  const plugin: ChannelPlugin<'slack'> = {
    type: 'slack',
    displayName: 'Memory',
    capabilities: {
      threads: false,
      edits: false,
      typing: false,
      statusNote: false,
      buttons: false,
      maxMessageChars: 500,
      batchSize: 2,
    },
    dialect: () => 'plain',
    delivery: () => 'send',
    format: (text, _account, limit) => formatForChannel(text, 'plain', limit),
    inbound: {
      signedBy: 'x-memory-signature',
      async verify(request, account, secret) {
        const header = request.headers['x-memory-signature'] ?? '';
        const expected = memorySignature(
          (await request.rawBody()).toString('utf8'),
          await secret(account.signingSecret),
        );
        return (
          header.length === expected.length &&
          timingSafeEqual(Buffer.from(header), Buffer.from(expected))
        );
      },
      normalize(body) {
        const hook = parseContract(MemoryWebhook, body);
        return {
          kind: 'messages',
          batch: {
            events: [
              {
                externalEventId: hook.id,
                sender: { id: hook.from, isBot: false },
                conversation: { kind: 'dm', id: hook.chat },
                message: { text: hook.text },
              },
            ],
            ignored: 0,
          },
        };
      },
    },
    connection: {
      credentials: (account) => [account.botToken],
      async open(account, [token], sink, key) {
        const held: MemoryConnection = { ...key, token: token ?? '', account, sink, open: true };
        connections.push(held);
        sink.state('running');
        return {
          async stop() {
            held.open = false;
          },
        };
      },
    },
    credentials: (account) => [account.botToken],
    createSender(_account, [token]) {
      built += 1;
      return {
        methodFor: () => ({ name: 'memory', dedupes: true }),
        async send(rows, method, { run, event }) {
          // Deduped by the first row's id, as a channel with an idempotency key would.
          const key = rows[0]!.messageId;
          if (!seen.has(key)) {
            seen.add(key);
            outbox.push({
              accountId: run.accountId,
              to: event.conversation.id,
              texts: rows.map((r) => r.text),
              token: token ?? '',
              messageId: key,
            });
          }
          return { method: method.name, externalMessageId: `mem-${key}` };
        },
      };
    },
  };
  const push = async (accountId: string, m: MemoryPush) => {
    const held = connections.find((c) => c.accountId === accountId && c.open);
    if (!held) throw new Error(`no open memory connection for ${accountId}`);
    return held.sink.messages({
      events: [
        {
          externalEventId: m.id,
          sender: { id: m.from, isBot: false },
          conversation: { kind: 'dm', id: m.chat },
          message: { text: m.text },
        },
      ],
      ignored: 0,
    });
  };
  return { plugin, outbox, built: () => built, connections, push };
}
