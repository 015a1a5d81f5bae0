import { createHmac, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import type { ChannelPlugin } from '../../pipeline/channels/ChannelPlugin.ts';
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
} {
  const outbox: MemorySent[] = [];
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
  return { plugin, outbox, built: () => built };
}
