// A hung Bot API took a typing call per execute attempt of every run of the account, each
// holding a socket for the sender's 15 s timeout: ~2,000 in a minute of the isolation bench,
// which slowed another tenant's runs 2.4x at p50. These pin the gate that bounds them.
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import type { Run } from '../../db/runs.ts';
import { BUILTIN_CHANNEL_PLUGINS } from '../../pipeline/channels/builtinChannelPlugins.ts';
import type { ChannelContext } from '../../pipeline/channels/ChannelContext.ts';
import { createChannelRegistry } from '../../pipeline/channels/registry.ts';
import { startProgress } from '../../pipeline/channels/startProgress.ts';
import { ChannelContract } from '../../pipeline/contracts/channelContract.ts';
import type { ConversationEvent } from '../../pipeline/contracts/conversationEvent.ts';
import { waitFor } from '../helpers/waitFor.ts';

/** A Bot API that counts `sendChatAction` and answers each after `delayMs` (never: null). */
async function startBotApi(delayMs: number | null) {
  const held: ServerResponse[] = [];
  let actions = 0;
  const server = createServer((req, res) => {
    if (req.url?.endsWith('/sendChatAction')) actions += 1;
    req.resume();
    if (delayMs === null) return void held.push(res);
    setTimeout(() => {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ ok: true, result: true }));
    }, delayMs);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    apiRoot: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    actions: () => actions,
    async close() {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}

let api: Awaited<ReturnType<typeof startBotApi>> | undefined;
afterEach(async () => {
  await api?.close();
  api = undefined;
});

function setUp(apiRoot: string) {
  const channel = ChannelContract.parse({
    type: 'telegram',
    botToken: 'secret:tg-token',
    webhookSecret: 'secret:tg-webhook',
    apiRoot,
    progress: { typingIndicator: true, statusAfterMs: 600_000 },
  });
  const ctx = {
    channels: createChannelRegistry(BUILTIN_CHANNEL_PLUGINS),
    secrets: { resolve: () => Promise.resolve('123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw1') },
    logger: pino({ level: 'silent' }),
    now: () => Date.now(),
  } as unknown as ChannelContext;
  const event = {
    conversation: { kind: 'dm', id: '7001' },
  } as unknown as ConversationEvent;
  let n = 0;
  const show = () => {
    n += 1;
    const run = { runId: `run-${n}`, projectId: 'acme', accountId: 'tg', live: true } as Run;
    return startProgress(ctx, { run, channel, event });
  };
  return { show };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('the typing indicator', () => {
  it('is shown for every run while the account API answers quickly', async () => {
    api = await startBotApi(0);
    const { show } = setUp(api.apiRoot);
    for (let i = 1; i <= 5; i += 1) {
      await show().stop();
      await waitFor(() => api!.actions() === i || undefined, { what: `typing ${i}` });
    }
  });

  it('keeps at most two calls in flight to an account whose API hangs', async () => {
    api = await startBotApi(null);
    const { show } = setUp(api.apiRoot);
    for (let i = 0; i < 20; i += 1) await show().stop();
    await waitFor(() => api!.actions() === 2 || undefined, { what: 'two typing calls' });
    await sleep(500);
    for (let i = 0; i < 20; i += 1) await show().stop();
    await sleep(500);
    expect(api.actions()).toBe(2);
  });

  it('sends none for a while after a call was slow, even once it has answered', async () => {
    api = await startBotApi(3500);
    const { show } = setUp(api.apiRoot);
    await show().stop();
    await waitFor(() => api!.actions() === 1 || undefined, { what: 'the first call' });
    // the call answers after 3.5 s, past the 3 s the gate calls slow
    await sleep(4500);
    for (let i = 0; i < 5; i += 1) await show().stop();
    await sleep(500);
    expect(api.actions()).toBe(1);
  });
});
