import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ConversationEvent } from '../../pipeline/contracts/conversationEvent.ts';
import { ProjectContract } from '../../pipeline/contracts/projectContract.ts';
import { bindAgent, sessionKeyFor } from '../../pipeline/runs/bindAgent.ts';
import { canaryBucket, decideMode } from '../../pipeline/runs/decideMode.ts';
import { openSecret, sealSecret } from '../../pipeline/secrets/secretBox.ts';
import { sessionWaitMs } from '../../pipeline/stages/execute.ts';

const event = (
  over: {
    channel?: 'telegram' | 'line';
    account?: string;
    sender?: string;
    kind?: 'dm' | 'group';
    id?: string;
    thread?: string;
  } = {},
) =>
  ConversationEvent.parse({
    eventId: '00000000-0000-4000-8000-000000000001',
    projectId: 'acme',
    traceId: '0'.repeat(31) + '1',
    channel: over.channel ?? 'telegram',
    accountId: over.account ?? 'tg',
    externalEventId: '1',
    receivedAt: new Date().toISOString(),
    sender: { id: over.sender ?? 'u1' },
    conversation: {
      kind: over.kind ?? 'dm',
      id: over.id ?? 'c1',
      ...(over.thread ? { threadId: over.thread } : {}),
    },
    message: { text: 'hi' },
  });

const project = ProjectContract.parse({
  displayName: 'Acme',
  owners: ['email:a@b.c'],
  dataBoundary: { region: 'x', retentionDays: 1 },
  budget: { monthlyLimitUsd: 1 },
  acl: { members: [] },
  defaultAgent: 'general',
  bindings: [
    { agent: 'by-channel', channel: 'line' },
    { agent: 'by-account', channel: 'telegram', account: 'ops' },
    { agent: 'by-peer', peer: 'vip' },
    { agent: 'by-group', group: 'g1' },
    { agent: 'by-thread', group: 'g1', thread: 't9' },
  ],
});

describe('bindings', () => {
  it('pick the most specific matching binding, else the default agent', () => {
    expect(bindAgent(project, event())).toBe('general');
    expect(bindAgent(project, event({ channel: 'line', account: 'ln' }))).toBe('by-channel');
    expect(bindAgent(project, event({ account: 'ops' }))).toBe('by-account');
    expect(bindAgent(project, event({ account: 'ops', sender: 'vip' }))).toBe('by-peer');
    expect(bindAgent(project, event({ kind: 'group', id: 'g1', sender: 'vip' }))).toBe('by-group');
    expect(bindAgent(project, event({ kind: 'group', id: 'g1', thread: 't9' }))).toBe('by-thread');
    // a dm whose chat id equals a group id is not that group
    expect(bindAgent(project, event({ kind: 'dm', id: 'g1' }))).toBe('general');
  });

  it('give a deterministic session key per agent and conversation, threads appended', () => {
    expect(sessionKeyFor('sre', event())).toBe('agent:sre:telegram:tg:dm:c1');
    expect(sessionKeyFor('sre', event({ kind: 'group', id: '-100', thread: '7' }))).toBe(
      'agent:sre:telegram:tg:group:-100:7',
    );
  });
});

describe('migration modes', () => {
  const peer = { projectId: 'acme', flow: 'default', channel: 'line', senderId: 'U1' };
  it('shadow never speaks; the other modes do', () => {
    expect(decideMode({ mode: 'shadow', canary: {} }, peer)).toMatchObject({ live: false });
    for (const mode of ['read_only', 'suggest', 'auto_remediate'] as const) {
      expect(decideMode({ mode, canary: {} }, peer)).toMatchObject({ mode, live: true });
    }
  });

  it('canary speaks to allow-listed peers and a stable share of the rest', () => {
    expect(
      decideMode({ mode: 'canary', canary: { percent: 0, allowPeers: ['line:U1'] } }, peer).live,
    ).toBe(true);
    expect(decideMode({ mode: 'canary', canary: { percent: 0, allowPeers: [] } }, peer).live).toBe(
      false,
    );
    expect(
      decideMode({ mode: 'canary', canary: { percent: 100, allowPeers: [] } }, peer).live,
    ).toBe(true);
    let live = 0;
    for (let i = 0; i < 2000; i++) {
      const d1 = decideMode(
        { mode: 'canary', canary: { percent: 10 } },
        { ...peer, senderId: `U${i}` },
      );
      const d2 = decideMode(
        { mode: 'canary', canary: { percent: 10 } },
        { ...peer, senderId: `U${i}` },
      );
      expect(d2.live).toBe(d1.live);
      if (d1.live) live += 1;
    }
    expect(live).toBeGreaterThan(120);
    expect(live).toBeLessThan(280);
    expect(canaryBucket('x')).toBe(canaryBucket('x'));
  });
});

describe('sealed secrets', () => {
  it('open only with the same key and the same project and name', () => {
    const key = randomBytes(32);
    const sealed = sealSecret(key, 'hunter2-token', 'awooop:secret:acme:tok');
    expect(openSecret(key, sealed, 'awooop:secret:acme:tok')).toBe('hunter2-token');
    expect(() => openSecret(key, sealed, 'awooop:secret:other:tok')).toThrow(/integrity/);
    expect(() => openSecret(randomBytes(32), sealed, 'awooop:secret:acme:tok')).toThrow(
      /sealed with key/,
    );
    const flipped = {
      ...sealed,
      ciphertext: Buffer.from(sealed.ciphertext.map((b, i) => (i === 0 ? b ^ 1 : b))),
    };
    expect(() => openSecret(key, flipped, 'awooop:secret:acme:tok')).toThrow(/integrity/);
    expect(sealed.ciphertext.toString('utf8')).not.toContain('hunter2');
  });
});

describe('sessionWaitMs', () => {
  it('looks again after 150 ms at first, then a tenth of the wait, at most a second', () => {
    expect(sessionWaitMs(0)).toBe(150);
    expect(sessionWaitMs(1000)).toBe(150);
    expect(sessionWaitMs(4000)).toBe(400);
    expect(sessionWaitMs(10_000)).toBe(1000);
    expect(sessionWaitMs(600_000)).toBe(1000);
  });
});
