import { describe, expect, it } from 'vitest';
import { validateOutput } from '../../pipeline/sanitize/validateOutput.ts';

const ANSWER_SCHEMA = {
  $schema: 'https://json-schema.org/draft/2020-12/schema',
  type: 'object',
  required: ['answer'],
  properties: {
    answer: { type: 'string', minLength: 1 },
    confidence: { type: 'number', minimum: 0, maximum: 1 },
    sources: {
      type: 'array',
      items: {
        type: 'object',
        required: ['url'],
        properties: { url: { type: 'string' }, 'a/b': { type: 'string' } },
      },
    },
    mode: { enum: ['short', 'long'] },
  },
  additionalProperties: false,
};

const REPORT_SCHEMA = {
  type: 'object',
  required: ['status', 'count'],
  properties: { status: { const: 'ok' }, count: { type: 'integer' } },
};

describe('validateOutput without a schema', () => {
  it('delivers the raw output trimmed', () => {
    expect(validateOutput('  Hello there.\n', undefined)).toEqual({
      ok: true,
      text: 'Hello there.',
    });
  });

  it('refuses an empty or blank output', () => {
    expect(validateOutput('', undefined)).toEqual({ ok: false, issues: ['output: empty'] });
    expect(validateOutput(' \n\t ', undefined)).toEqual({ ok: false, issues: ['output: empty'] });
  });
});

describe('validateOutput with a schema', () => {
  it('delivers the answer field of a valid object and returns the parsed JSON', () => {
    const raw = '{"answer":"The disk is 91% full.","confidence":0.8}';
    expect(validateOutput(raw, ANSWER_SCHEMA)).toEqual({
      ok: true,
      text: 'The disk is 91% full.',
      json: { answer: 'The disk is 91% full.', confidence: 0.8 },
    });
  });

  it('tolerates one ```json fenced block around the JSON', () => {
    const raw = '```json\n{ "answer": "fenced" }\n```';
    expect(validateOutput(`\n${raw}\n`, ANSWER_SCHEMA)).toEqual({
      ok: true,
      text: 'fenced',
      json: { answer: 'fenced' },
    });
    expect(validateOutput('```\n{"answer":"bare fence"}\n```', ANSWER_SCHEMA)).toMatchObject({
      ok: true,
      text: 'bare fence',
    });
  });

  it('pretty-prints JSON that has no string answer field', () => {
    expect(validateOutput('{"status":"ok","count":3}', REPORT_SCHEMA)).toEqual({
      ok: true,
      text: '{\n  "status": "ok",\n  "count": 3\n}',
      json: { status: 'ok', count: 3 },
    });
  });

  it('names the field and the rule for a value that breaks the schema', () => {
    expect(validateOutput('{"answer":""}', ANSWER_SCHEMA)).toEqual({
      ok: false,
      issues: ['answer: must NOT have fewer than 1 characters'],
    });
  });

  it('reports every problem, with dotted paths and the root as output', () => {
    const raw = JSON.stringify({
      confidence: 2,
      sources: [{ url: 'https://a.test' }, { 'a/b': 5 }],
      mode: 'medium',
      extra: true,
    });
    const result = validateOutput(raw, ANSWER_SCHEMA);
    expect(result.ok).toBe(false);
    expect(result.ok ? [] : [...result.issues].sort()).toEqual(
      [
        "output: must have required property 'answer'",
        'output: must NOT have additional properties: extra',
        'confidence: must be <= 1',
        "sources.1: must have required property 'url'",
        'sources.1.a/b: must be string',
        'mode: must be equal to one of the allowed values: "short", "long"',
      ].sort(),
    );
  });

  it('refuses output that is not JSON', () => {
    const result = validateOutput('Sure! Here is the answer: 42', ANSWER_SCHEMA);
    expect(result.ok).toBe(false);
    expect(result.ok ? [] : result.issues).toEqual([
      expect.stringMatching(/^output: must be JSON \(.+\)$/),
    ]);
  });

  it('refuses JSON wrapped in prose, or more than one fenced block', () => {
    for (const raw of [
      'Here you go: {"answer":"x"}',
      '```json\n{"answer":"a"}\n```\n```json\n{"answer":"b"}\n```',
    ]) {
      expect(validateOutput(raw, ANSWER_SCHEMA)).toMatchObject({ ok: false });
    }
  });

  it('refuses an empty output', () => {
    expect(validateOutput('  ', ANSWER_SCHEMA)).toEqual({ ok: false, issues: ['output: empty'] });
  });

  it('refuses an answer that is only whitespace, even when the schema allows it', () => {
    expect(validateOutput('{"answer":"   "}', { type: 'object' })).toEqual({
      ok: false,
      issues: ['answer: empty'],
    });
  });

  it('refuses JSON of the wrong type at the root', () => {
    expect(validateOutput('["answer"]', ANSWER_SCHEMA)).toEqual({
      ok: false,
      issues: ['output: must be object'],
    });
  });

  it('refuses everything when the schema does not compile', () => {
    const result = validateOutput('{"answer":"x"}', { type: 'objet' });
    expect(result.ok).toBe(false);
    expect(result.ok ? [] : result.issues).toEqual([expect.stringMatching(/^outputSchema: /)]);
    const unresolved = validateOutput('{"answer":"x"}', { $ref: '#/$defs/missing' });
    expect(unresolved).toEqual({
      ok: false,
      issues: [expect.stringMatching(/^outputSchema: .*missing/)],
    });
  });

  it('refuses a schema that is not JSON at all', () => {
    const result = validateOutput('{"answer":"x"}', { n: 1n });
    expect(result).toEqual({ ok: false, issues: [expect.stringMatching(/^outputSchema: /)] });
  });

  it('gives the same verdicts when a schema is reused, even with its keys reordered', () => {
    const reordered = JSON.parse(
      '{"additionalProperties":false,"properties":{"answer":{"minLength":1,"type":"string"}},"required":["answer"],"type":"object"}',
    ) as unknown;
    const small = {
      type: 'object',
      required: ['answer'],
      properties: { answer: { type: 'string', minLength: 1 } },
      additionalProperties: false,
    };
    for (const schema of [small, reordered, small]) {
      expect(validateOutput('{"answer":"yes"}', schema)).toMatchObject({ ok: true, text: 'yes' });
      expect(validateOutput('{"answer":""}', schema)).toEqual({
        ok: false,
        issues: ['answer: must NOT have fewer than 1 characters'],
      });
    }
  });

  it('keeps schemas that share an $id apart', () => {
    const a = { $id: 'https://schemas.test/out', type: 'object' };
    const b = { $id: 'https://schemas.test/out', type: 'array' };
    expect(validateOutput('{}', a)).toMatchObject({ ok: true });
    expect(validateOutput('[]', b)).toMatchObject({ ok: true });
    expect(validateOutput('{}', b)).toEqual({ ok: false, issues: ['output: must be array'] });
  });

  it('treats format as an annotation, as draft 2020-12 does by default', () => {
    const schema = {
      type: 'object',
      properties: { answer: { type: 'string', format: 'email' } },
    };
    expect(validateOutput('{"answer":"not an email"}', schema)).toMatchObject({ ok: true });
  });
});
