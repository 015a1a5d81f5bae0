import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import type { z } from 'zod';
import { formatIssues } from '../../pipeline/contracts/formatIssues.ts';
import { CONTRACT_KINDS } from '../../pipeline/contracts/common.ts';
import { BUILTIN_CHANNEL_PLUGINS } from '../../pipeline/channels/builtinChannelPlugins.ts';
import { createChannelRegistry } from '../../pipeline/channels/registry.ts';
import { CONTRACT_SCHEMAS, tenantFileSchema } from '../../pipeline/contracts/tenantFile.ts';

/** The tenant file as apply reads it: channel types limited to the registered plugins'. */
const APPLIED_TENANT = tenantFileSchema(createChannelRegistry(BUILTIN_CHANNEL_PLUGINS).types());
const ROOT = fileURLToPath(new URL('../fixtures/contracts/', import.meta.url));
const schemaFor = (kind: string): z.ZodType =>
  kind === 'tenant' ? APPLIED_TENANT : CONTRACT_SCHEMAS[kind as keyof typeof CONTRACT_SCHEMAS];

it('has a fixture folder for each contract kind and the tenant file, and no other', () => {
  expect(readdirSync(ROOT).sort()).toEqual([...CONTRACT_KINDS, 'tenant'].sort());
});

/** Runs every fixture: `valid*.yaml` must parse, `invalid-*.yaml` must fail with exactly its `# expect:` lines. */
describe.each(readdirSync(ROOT))('%s contract fixtures', (kind) => {
  const files = readdirSync(`${ROOT}/${kind}`).filter((f) => f.endsWith('.yaml'));

  it('has a valid example and at least three invalid ones', () => {
    expect(files).toContain('valid.yaml');
    expect(files.filter((f) => f.startsWith('invalid-')).length).toBeGreaterThanOrEqual(3);
  });

  it.each(files)('%s', (file) => {
    const text = readFileSync(`${ROOT}/${kind}/${file}`, 'utf8');
    const expected = [...text.matchAll(/^# expect: (.*)$/gm)].map((m) => m[1]);
    const result = schemaFor(kind).safeParse(parse(text));
    if (file.startsWith('valid')) {
      expect(result.success ? [] : formatIssues(result.error)).toEqual([]);
    } else {
      expect(expected.length).toBeGreaterThan(0);
      expect(result.success ? [] : formatIssues(result.error)).toEqual(expected);
    }
  });
});
