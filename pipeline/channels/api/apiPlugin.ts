import { formatForChannel } from '../../sanitize/formatForChannel.ts';
import type { ChannelPlugin } from '../ChannelPlugin.ts';
import { postCallback } from './postCallback.ts';

/**
 * The HTTP API channel: messages come in through `/v1` (not a webhook), answers are stored on
 * the ledger for the client to read, or POSTed to the account's callback URL with the row's
 * id as `Idempotency-Key` (so a repeat is the receiver's to drop). Plain text, no limit.
 */
export const apiPlugin: ChannelPlugin<'api'> = {
  type: 'api',
  displayName: 'HTTP API',
  capabilities: {
    threads: false,
    edits: false,
    typing: false,
    statusNote: false,
    buttons: false,
    maxMessageChars: null,
    batchSize: 1,
  },
  dialect: () => 'plain',
  delivery: (account) => (account.callbackUrl ? 'send' : 'store'),
  format: (text, _account, limit) => formatForChannel(text, 'plain', limit),
  credentials: () => [],
  createSender(account) {
    const callbackUrl = account.callbackUrl;
    return {
      methodFor: () => ({ name: callbackUrl ? 'callback' : 'stored', dedupes: true }),
      async send(rows, _method, { run }) {
        if (!callbackUrl) return { method: 'stored' };
        const row = rows[0]!;
        await postCallback(
          callbackUrl,
          {
            project_id: run.projectId,
            run_id: run.runId,
            kind: row.kind,
            chunk_index: row.chunkIndex,
            chunk_count: row.chunkCount,
            text: row.text,
          },
          row.messageId,
        );
        return { method: 'callback' };
      },
    };
  },
};
