import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { bodyHash, canonicalJson } from '../../pipeline/contracts/canonicalJson.ts';
import { ConversationEvent } from '../../pipeline/contracts/conversationEvent.ts';
import { OutboundMessage } from '../../pipeline/contracts/outboundMessage.ts';
import { RunJob } from '../../pipeline/contracts/runJob.ts';
import { ToolCallEnvelope } from '../../pipeline/contracts/toolCallEnvelope.ts';
import { formatIssues, parseContract } from '../../pipeline/contracts/formatIssues.ts';
import {
  CONTRACT_SCHEMAS,
  TenantFile,
  tenantRevisions,
} from '../../pipeline/contracts/tenantFile.ts';
import { diffBodies, formatDiff } from '../../pipeline/control/diffBodies.ts';
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';

const trace = 'a'.repeat(32);

describe('canonical JSON and body hashes', () => {
  it('ignores key order and whitespace, and sees any changed value', () => {
    const a = JSON.parse('{ "b": [1, {"y": 2, "x": 1}], "a": "é" }');
    const b = JSON.parse('{"a":"é","b":[1,{"x":1,"y":2}]}');
    expect(canonicalJson(a)).toBe('{"a":"é","b":[1,{"x":1,"y":2}]}');
    expect(bodyHash(a)).toBe(bodyHash(b));
    expect(bodyHash({ ...b, a: 'e' })).not.toBe(bodyHash(b));
    expect(bodyHash({ x: [1, 2] })).not.toBe(bodyHash({ x: [2, 1] }));
  });

  it('drops undefined members and refuses values JSON cannot hold', () => {
    expect(canonicalJson({ a: undefined, b: 1 })).toBe('{"b":1}');
    expect(() => canonicalJson({ n: Number.NaN })).toThrow(/non-finite/);
  });
});

describe('tenant file', () => {
  const tenant = parseContract(
    TenantFile,
    parse(
      readFileSync(new URL('../fixtures/contracts/tenant/valid.yaml', import.meta.url), 'utf8'),
    ),
  );

  it('splits into one revision per contract with stable kinds and names, project id left out', () => {
    const docs = tenantRevisions(tenant);
    expect(docs.map((d) => `${d.kind}/${d.name}`)).toEqual([
      'project/project',
      'agent/helper',
      'mcp_gateway/gateway',
      'policy/default',
      'runtime/runtime',
      'channel/ops',
    ]);
    expect(docs[0]!.body).not.toHaveProperty('id');
  });

  it('stores bodies with defaults filled in, so a changed default shows up as a diff', () => {
    const agent = tenantRevisions(tenant).find((d) => d.kind === 'agent')!.body;
    expect(agent).toMatchObject({
      maxSteps: 8,
      policy: 'default',
      flow: 'default',
      history: { maxMessages: 20 },
    });
  });

  it('gives bodies that re-validate by kind to the same hash, so a stored body can be checked', () => {
    for (const { kind, name, body } of tenantRevisions(tenant)) {
      const reparsed = CONTRACT_SCHEMAS[kind].safeParse(body);
      expect(reparsed.success, `${kind}/${name}`).toBe(true);
      expect(bodyHash(reparsed.data), `${kind}/${name}`).toBe(bodyHash(body));
    }
  });

  it('refuses with every problem at once, each with its path', () => {
    expect(() => parseContract(TenantFile, { apiVersion: 'awooop/v1', extra: true })).toThrow(
      expect.objectContaining({
        code: 'CONTRACT_INVALID',
        issues: expect.arrayContaining(['extra: unknown field', 'project: required']),
      }),
    );
  });
});

describe('body diffs', () => {
  it('reports added, removed and changed leaves by path', () => {
    const lines = diffBodies(
      { a: 1, tools: ['x'], o: { k: true } },
      { a: 2, tools: ['x', 'y'], n: null },
    );
    expect(formatDiff(lines)).toEqual([
      '~ a: 1 → 2',
      '+ n: null',
      '- o: {"k":true}',
      '+ tools[1]: "y"',
    ]);
    expect(diffBodies({ a: [1] }, { a: [1] })).toEqual([]);
  });
});

describe('pipeline envelopes', () => {
  const event = {
    eventId: randomUUID(),
    projectId: 'acme',
    traceId: trace,
    channel: 'telegram',
    accountId: 'ops',
    externalEventId: '123456789',
    receivedAt: new Date().toISOString(),
    sender: { id: '42', displayName: 'Ada' },
    conversation: { kind: 'group', id: '-1001', threadId: '7' },
    message: { text: 'is the api up?' },
  };

  it('accepts a conversation event and refuses an unknown field', () => {
    expect(ConversationEvent.parse(event).sender.isBot).toBe(false);
    expect(ConversationEvent.safeParse({ ...event, raw: {} }).success).toBe(false);
    expect(ConversationEvent.safeParse({ ...event, projectId: 'platform' }).success).toBe(false);
  });

  it('names bad ids and timestamps in plain words', () => {
    const result = ConversationEvent.safeParse({
      ...event,
      eventId: 'evt-1',
      receivedAt: 'yesterday',
      sender: { id: '42', isBot: 'no' },
    });
    expect(result.success ? [] : formatIssues(result.error)).toEqual([
      'eventId: must be a UUID',
      'receivedAt: must be an ISO 8601 date-time, like 2025-01-31T12:00:00Z',
      'sender.isBot: must be true or false, not text',
    ]);
  });

  it('accepts an outbound chunk and refuses an index past the count', () => {
    const chunk = {
      messageId: randomUUID(),
      projectId: 'acme',
      runId: randomUUID(),
      traceId: trace,
      channel: 'line',
      accountId: 'biz',
      conversation: { kind: 'dm', id: 'U1' },
      chunkIndex: 0,
      chunkCount: 1,
      text: 'hello',
      format: 'plain',
      idempotencyKey: 'run-1-0',
    };
    expect(OutboundMessage.safeParse(chunk).success).toBe(true);
    expect(OutboundMessage.safeParse({ ...chunk, chunkIndex: 1 }).success).toBe(false);
  });

  it('keeps job data to ids and refuses anything else', () => {
    const job = { projectId: 'acme', runId: randomUUID(), traceId: trace, stage: 'policy' };
    expect(RunJob.parse(job)).toEqual(job);
    expect(RunJob.safeParse({ ...job, text: 'message body' }).success).toBe(false);
  });

  it('carries a credential ref on a tool call, never a literal', () => {
    const call = {
      callId: randomUUID(),
      projectId: 'acme',
      runId: randomUUID(),
      traceId: trace,
      agent: 'helper',
      tool: 'billing.get_invoice',
      risk: 'read',
      arguments: { id: 'inv_1' },
      argumentsSha256: bodyHash({ id: 'inv_1' }),
      credentialRef: 'secret:billing-token',
    };
    expect(ToolCallEnvelope.safeParse(call).success).toBe(true);
    expect(ToolCallEnvelope.safeParse({ ...call, credentialRef: 'Bearer abc' }).success).toBe(
      false,
    );
  });
});
