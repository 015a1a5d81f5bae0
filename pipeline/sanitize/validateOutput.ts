import { Ajv2020, type ErrorObject, type ValidateFunction } from 'ajv/dist/2020.js';
import { canonicalJson } from '../contracts/canonicalJson.ts';

/** The outcome of checking a model's output: the text to deliver, or why nothing may be. */
export type ValidatedOutput =
  { ok: true; text: string; json?: unknown } | { ok: false; issues: string[] };

type Compiled = { validate: ValidateFunction } | { error: string };

/** Compiled schemas by canonical JSON; the oldest entry goes first when it is full. */
const compiled = new Map<string, Compiled>();
const MAX_COMPILED = 256;

const FENCED_JSON = /^```(?:json)?[ \t]*\r?\n([\s\S]*?)\r?\n?```$/i;

function compile(schema: unknown): Compiled {
  let key: string;
  try {
    key = canonicalJson(schema);
  } catch (error) {
    return { error: error instanceof Error ? error.message : String(error) };
  }
  const hit = compiled.get(key);
  if (hit !== undefined) return hit;
  let entry: Compiled;
  try {
    // One instance per schema: two schemas sharing an `$id` would otherwise collide. Formats
    // are annotations in 2020-12, so they are not asserted.
    const ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: false });
    entry = { validate: ajv.compile(schema as object) };
  } catch (error) {
    entry = { error: error instanceof Error ? error.message : String(error) };
  }
  if (compiled.size >= MAX_COMPILED) {
    const oldest = compiled.keys().next();
    if (oldest.done !== true) compiled.delete(oldest.value);
  }
  compiled.set(key, entry);
  return entry;
}

/** `/items/0/name` → `items.0.name`; the root is `output`. */
function pathOf(instancePath: string): string {
  if (instancePath === '') return 'output';
  return instancePath
    .slice(1)
    .split('/')
    .map((part) => part.replace(/~1/g, '/').replace(/~0/g, '~'))
    .join('.');
}

function describe(error: ErrorObject): string {
  const message = error.message ?? 'is invalid';
  const params = error.params as Record<string, unknown>;
  if (error.keyword === 'additionalProperties' || error.keyword === 'unevaluatedProperties') {
    const extra = params['additionalProperty'] ?? params['unevaluatedProperty'];
    if (typeof extra === 'string') return `${message}: ${extra}`;
  }
  if (error.keyword === 'enum' && Array.isArray(params['allowedValues'])) {
    return `${message}: ${params['allowedValues'].map((v) => JSON.stringify(v)).join(', ')}`;
  }
  return message;
}

function parseJson(raw: string): { json: unknown } | { issue: string } {
  const fenced = FENCED_JSON.exec(raw);
  const body = fenced?.[1] ?? raw;
  try {
    return { json: JSON.parse(body) as unknown };
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    return { issue: `output: must be JSON (${reason})` };
  }
}

/**
 * Checks a model's raw output before anything is delivered, failing closed.
 *
 * Without a schema the output is delivered trimmed; an empty output is refused
 * (`output: empty`). With a JSON Schema (draft 2020-12) the output must be JSON, optionally
 * inside one ```json fenced block, and valid against it; the text delivered is the object's
 * string `answer` field when it has one, else the JSON pretty-printed. Each problem is one
 * `path: message` line, the path dotted from the instance path (`answer`, `items.0.name`) and
 * `output` for the root. A schema that does not compile is refused as `outputSchema: …`.
 * Schemas are compiled once and cached by their canonical JSON.
 */
export function validateOutput(raw: string, schema: unknown): ValidatedOutput {
  const trimmed = raw.trim();
  if (schema === undefined) {
    return trimmed === '' ? { ok: false, issues: ['output: empty'] } : { ok: true, text: trimmed };
  }
  const entry = compile(schema);
  if ('error' in entry) return { ok: false, issues: [`outputSchema: ${entry.error}`] };
  if (trimmed === '') return { ok: false, issues: ['output: empty'] };
  const parsed = parseJson(trimmed);
  if ('issue' in parsed) return { ok: false, issues: [parsed.issue] };
  const { json } = parsed;
  let valid: boolean;
  try {
    valid = entry.validate(json) === true;
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    return { ok: false, issues: [`outputSchema: ${reason}`] };
  }
  if (!valid) {
    const issues = (entry.validate.errors ?? []).map(
      (e) => `${pathOf(e.instancePath)}: ${describe(e)}`,
    );
    return { ok: false, issues: issues.length > 0 ? [...new Set(issues)] : ['output: is invalid'] };
  }
  const answer =
    typeof json === 'object' && json !== null && !Array.isArray(json)
      ? (json as Record<string, unknown>)['answer']
      : undefined;
  const text = typeof answer === 'string' ? answer.trim() : JSON.stringify(json, null, 2);
  if (text === '') return { ok: false, issues: ['answer: empty'] };
  return { ok: true, text, json };
}
