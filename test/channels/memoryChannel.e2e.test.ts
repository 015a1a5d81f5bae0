import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { applyTestTenant, pipelineTenant, TEST_SECRETS } from '../../ops/fakes/pipelineTenant.ts';
import { BUILTIN_CHANNEL_PLUGINS } from '../../pipeline/channels/builtinChannelPlugins.ts';
import { createChannelRegistry } from '../../pipeline/channels/registry.ts';
import { ChannelContract } from '../../pipeline/contracts/channelContract.ts';
import { tenantFileSchema } from '../../pipeline/contracts/tenantFile.ts';
import { createMemoryChannel, memorySignature } from '../fakes/memoryChannel.ts';
import { startPipeline, type Pipeline } from '../helpers/startPipeline.ts';
import { tableCounts } from '../helpers/tableCounts.ts';
import { useTestDatabase } from '../helpers/testDatabase.ts';
import { useRedisPrefix } from '../helpers/useRedisPrefix.ts';
import { waitFor } from '../helpers/waitFor.ts';

// The plugin interface is enough to add a channel: a toy plugin registered here, and nothing
// else changed, carries a run from its webhook through every stage to its send and the ledger.
const db = useTestDatabase();
const prefix = useRedisPrefix();
const PROJECT = 'memory';
const ACCOUNT = 'mem';
const SIGNING = 'memory-signing-secret';

const memory = createMemoryChannel();
// Every ChannelType has a built-in plugin now: the toy takes Slack's type, with Slack's own
// plugin left out of this file's registry.
const BUILTINS_BUT_SLACK = BUILTIN_CHANNEL_PLUGINS.filter((p) => p.type !== 'slack');
let pipeline: Pipeline;
let owner: pg.Client;

function tenant() {
  const t = pipelineTenant({
    projectId: PROJECT,
    telegramApiRoot: 'http://127.0.0.1:9',
    lineBaseUrl: 'http://127.0.0.1:9',
  });
  t.tenant.channels[ACCOUNT] = ChannelContract.parse({
    type: 'slack',
    signingSecret: 'secret:mem-signing',
    botToken: 'secret:mem-token',
  });
  return t;
}

beforeAll(async () => {
  pipeline = await startPipeline({
    pool: db().pool,
    sweeperPool: db().sweeperPool,
    prefix,
    channels: [...BUILTINS_BUT_SLACK, memory.plugin],
  });
  owner = await db().owner();
  await applyTestTenant({ pool: db().pool, logger: pipeline.ctx.logger }, tenant());
  for (const [name, value] of Object.entries(TEST_SECRETS))
    await pipeline.setSecret(PROJECT, name, value);
  await pipeline.setSecret(PROJECT, 'mem-signing', SIGNING);
  await pipeline.setSecret(PROJECT, 'mem-token', 'token-1');
});

afterAll(async () => {
  await pipeline?.close();
});

function post(body: object, signature?: string) {
  const raw = JSON.stringify(body);
  return fetch(`${pipeline.url}/webhooks/slack/${PROJECT}/${ACCOUNT}`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'x-memory-signature': signature ?? memorySignature(raw, SIGNING),
    },
    body: raw,
  });
}

describe('a channel added as a plugin alone', () => {
  it('is refused at apply until its plugin is registered, and accepted once it is', () => {
    const raw = JSON.parse(JSON.stringify(tenant().tenant)) as unknown;
    const builtins = createChannelRegistry(BUILTINS_BUT_SLACK).types();
    const refused = tenantFileSchema(builtins).safeParse(raw);
    expect(refused.success).toBe(false);
    expect(refused.error?.issues.map((i) => [i.path.join('.'), i.message])).toContainEqual([
      `channels.${ACCOUNT}.type`,
      expect.stringMatching(/not supported yet: no channel plugin receives or sends it/),
    ]);
    expect(tenantFileSchema(pipeline.ctx.channels.types()).safeParse(raw).success).toBe(true);
  });

  it('answers one message through verify, normalize, the stages and its own send, on the ledger', async () => {
    const res = await post({ id: 'evt-1', from: 'u1', chat: 'c1', text: 'hello memory' });
    expect(res.status).toBe(200);
    const { runs } = (await res.json()) as { runs: string[] };
    expect(runs).toHaveLength(1);
    const sent = await waitFor(() => memory.outbox.find((m) => m.to === 'c1'), {
      what: 'the answer in the memory outbox',
    });
    expect(sent).toMatchObject({ accountId: ACCOUNT, token: 'token-1' });
    expect(sent.texts.join('')).toContain('hello memory');
    const rows = await waitFor(async () => {
      const r = await owner.query(
        'SELECT kind, status, method, external_message_id FROM outbound_messages WHERE run_id = $1',
        [runs[0]],
      );
      return r.rows.length > 0 && r.rows.every((row) => row.status === 'sent') && r.rows;
    });
    expect(rows).toEqual([
      {
        kind: 'reply',
        status: 'sent',
        method: 'memory',
        external_message_id: `mem-${sent.messageId}`,
      },
    ]);
    const state = await waitFor(async () => {
      const r = await owner.query<{ state: string }>('SELECT state FROM runs WHERE run_id = $1', [
        runs[0],
      ]);
      return r.rows[0]?.state === 'COMPLETED' && r.rows[0].state;
    });
    expect(state).toBe('COMPLETED');
  });

  it('refuses a bad signature with 401 and writes nothing', async () => {
    const before = await tableCounts(owner);
    const res = await post(
      { id: 'evt-bad', from: 'u1', chat: 'c1', text: 'forged' },
      'f'.repeat(64),
    );
    expect(res.status).toBe(401);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe(
      'SIGNATURE_INVALID',
    );
    expect(await tableCounts(owner)).toEqual(before);
  });

  it('makes no second run for a retried webhook', async () => {
    const body = { id: 'evt-2', from: 'u2', chat: 'c2', text: 'once' };
    const first = (await (await post(body)).json()) as { runs: string[] };
    const again = (await (await post(body)).json()) as { runs: string[] };
    expect(again.runs).toEqual(first.runs);
    await waitFor(() => memory.outbox.some((m) => m.to === 'c2'));
  });

  it('reuses the account sender across runs, and builds a new one when its secret rotates', async () => {
    await waitFor(() => memory.outbox.some((m) => m.to === 'c2'));
    const builtSoFar = memory.built();
    await post({ id: 'evt-3', from: 'u3', chat: 'c3', text: 'same sender' });
    await waitFor(() => memory.outbox.some((m) => m.to === 'c3'));
    expect(memory.built()).toBe(builtSoFar);

    await pipeline.setSecret(PROJECT, 'mem-token', 'token-2');
    await post({ id: 'evt-4', from: 'u4', chat: 'c4', text: 'rotated' });
    const rotated = await waitFor(() => memory.outbox.find((m) => m.to === 'c4'));
    expect(rotated.token).toBe('token-2');
    expect(memory.built()).toBe(builtSoFar + 1);
  });
});
