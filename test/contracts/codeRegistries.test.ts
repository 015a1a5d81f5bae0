import { readdirSync, readFileSync } from 'node:fs';
import { STATUS_CODES } from 'node:http';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { statusErrorCode } from '../../ingress/statusErrorCode.ts';
import { renderCodeDocs } from '../../ops/docs/renderCodeDocs.ts';
import { AUDIT_ACTIONS } from '../../pipeline/contracts/auditActions.ts';
import { ERROR_CODES, isErrorCode } from '../../pipeline/errorCodes.ts';
import { AppError } from '../../pipeline/errors.ts';

const root = fileURLToPath(new URL('../../', import.meta.url));

/** Every shipped TypeScript file's text, by path from the root (not tests, not the registries). */
function shippedSources(): Map<string, string> {
  const out = new Map<string, string>();
  for (const dir of ['db', 'ingress', 'ops', 'pipeline', 'workers']) {
    for (const entry of readdirSync(join(root, dir), { recursive: true, withFileTypes: true })) {
      if (!entry.isFile() || !entry.name.endsWith('.ts')) continue;
      const path = relative(root, join(entry.parentPath, entry.name));
      if (path.startsWith('pipeline/errorCodes.ts')) continue;
      if (path.startsWith('pipeline/contracts/auditActions.ts')) continue;
      out.set(path, readFileSync(join(root, path), 'utf8'));
    }
  }
  return out;
}

describe('the code registries', () => {
  it('are what the docs list, entry for entry (regenerate with node ops/docs/writeCodeDocs.ts)', () => {
    for (const doc of renderCodeDocs()) {
      expect(readFileSync(join(root, doc.path), 'utf8'), doc.path).toBe(doc.text);
    }
  });

  it('keep codes SCREAMING_SNAKE and actions dotted lower case, each with one line of doc', () => {
    for (const [code, doc] of Object.entries(ERROR_CODES)) {
      expect(code).toMatch(/^[A-Z][A-Z0-9]*(_[A-Z0-9]+)*$/);
      expect(doc, code).toMatch(/^\S.*\S$/);
      expect(doc, code).not.toContain('\n');
    }
    for (const [action, doc] of Object.entries(AUDIT_ACTIONS)) {
      expect(action).toMatch(/^[a-z_]+(\.[a-z_]+)+$/);
      expect(doc, action).not.toContain('\n');
    }
  });

  it('hold no entry that shipped code never names', () => {
    const text = [...shippedSources().values()].join('\n');
    const unused = Object.keys(ERROR_CODES).filter((code) => !text.includes(`'${code}'`));
    expect(unused).toEqual([]);
    // run.<state> rows are written by db/runs.ts from the state's name.
    const actions = Object.keys(AUDIT_ACTIONS).filter(
      (action) => !action.startsWith('run.') || ['run.requeued', 'run.retried'].includes(action),
    );
    expect(
      actions.filter(
        (action) =>
          !text.includes(`'${action}'`) &&
          !text.includes(`'${action.split('.')[0]}.\${`) &&
          !text.includes(`\`${action.split('.')[0]}.\${`),
      ),
    ).toEqual([]);
  });

  it("name an edge answer after its status as Node's reason phrase did, else HTTP_ERROR", () => {
    for (let status = 400; status < 600; status += 1) {
      const phrase = STATUS_CODES[status];
      const derived = phrase?.toUpperCase().replace(/[^A-Z0-9]+/g, '_');
      const code = statusErrorCode(status);
      expect(isErrorCode(code)).toBe(true);
      if (code !== 'HTTP_ERROR') expect(code, String(status)).toBe(derived);
      // Every client error (what an exposed library error carries) keeps its own name.
      if (status < 500 && derived !== undefined) expect(code, String(status)).toBe(derived);
    }
    expect(statusErrorCode(501)).toBe('NOT_IMPLEMENTED');
    expect(statusErrorCode(599)).toBe('HTTP_ERROR');
  });

  it('refuse a misspelt code and an unknown action at type-check time', () => {
    // @ts-expect-error: not a registered code (tsc --noEmit fails if this line compiles)
    const misspelt = new AppError('RUN_NOT_FUOND', 'x');
    expect(isErrorCode(misspelt.code)).toBe(false);
    // @ts-expect-error: not a registered action
    const action: keyof typeof AUDIT_ACTIONS = 'run.deleted';
    expect(Object.hasOwn(AUDIT_ACTIONS, action)).toBe(false);
  });

  it('tells a registered code from any other string', () => {
    expect(isErrorCode('RUN_NOT_FOUND')).toBe(true);
    expect(isErrorCode('RUN_NOT_FOUNDX')).toBe(false);
    expect(isErrorCode('toString')).toBe(false);
  });
});
