import type { z } from 'zod';
import { ContractViolationError } from '../errors.ts';

type Path = readonly PropertyKey[];

/** Renders a path as `agents.sre.tools[1]`; the empty path is `(root)`. */
export function formatPath(path: Path): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += out ? `.${String(part)}` : String(part);
  }
  return out || '(root)';
}

/**
 * One plain-English line per problem, `path: message`, the path naming the bad field itself:
 * an unknown key is reported at `parent.key`, a missing field says `required`, a bad enum or
 * literal lists what is allowed. A message a schema wrote itself is kept as written; zod's own
 * wording is rephrased from the issue's fields.
 */
export function formatIssues(error: z.ZodError): string[] {
  return error.issues.flatMap((issue) => {
    const at = (path: Path, message: string) => `${formatPath(path)}: ${message}`;
    switch (issue.code) {
      case 'unrecognized_keys':
        return issue.keys.map((key) => at([...issue.path, key], 'unknown field'));
      case 'invalid_value':
        return [
          at(
            issue.path,
            issue.values.length === 1
              ? `must be ${JSON.stringify(issue.values[0])}`
              : `must be one of: ${issue.values.join(', ')}`,
          ),
        ];
      case 'invalid_key':
        return [at(issue.path, `is not a valid name: ${issue.issues.map(describe).join('; ')}`)];
      default:
        return [at(issue.path, describe(issue))];
    }
  });
}

/** The issue's own message if a schema wrote one, else zod's meaning in plain words. */
function describe(issue: z.core.$ZodIssue): string {
  return isZodWording(issue.message) ? plain(issue) : issue.message;
}

/**
 * zod's built-in English messages all start `Invalid …` or `Too small:` / `Too big:`; the
 * messages our schemas write never do (keep it so), which is how the two are told apart.
 */
function isZodWording(message: string): boolean {
  return /^(Invalid |Too (small|big): )/.test(message);
}

/** An issue in words a YAML author uses, built from its fields rather than zod's text. */
function plain(issue: z.core.$ZodIssue): string {
  switch (issue.code) {
    case 'invalid_type': {
      // The received type is only in the message: zod drops `input` from reported issues.
      const received = /received (\w+)$/.exec(issue.message)?.[1];
      if (received === 'undefined') return 'required';
      if (issue.expected === 'int' && received === 'number') return 'must be a whole number';
      return received
        ? `must be ${noun(issue.expected)}, not ${noun(received)}`
        : `must be ${noun(issue.expected)}`;
    }
    case 'too_small': {
      const n = Number(issue.minimum);
      if (issue.origin === 'string' && n === 1) return 'must not be empty';
      if (issue.origin === 'array' || issue.origin === 'set')
        return `needs at least ${count(n, 'item')}`;
      if (issue.origin === 'string') return `needs at least ${count(n, 'character')}`;
      return issue.inclusive === false ? `must be greater than ${n}` : `must be at least ${n}`;
    }
    case 'too_big': {
      const n = Number(issue.maximum);
      if (issue.origin === 'array' || issue.origin === 'set')
        return `allows at most ${count(n, 'item')}`;
      if (issue.origin === 'string') return `allows at most ${count(n, 'character')}`;
      return issue.inclusive === false ? `must be less than ${n}` : `must be at most ${n}`;
    }
    case 'invalid_format':
      return FORMATS[issue.format] ?? 'is not in the expected format';
    case 'invalid_union':
      if ('options' in issue && Array.isArray(issue.options) && issue.options.length > 0) {
        return `must be one of: ${(issue.options as unknown[]).join(', ')}`;
      }
      return 'does not match any of the allowed shapes';
    case 'not_multiple_of':
      return `must be a multiple of ${String(issue.divisor)}`;
    default:
      return 'is not valid';
  }
}

/** What each string format expects, said plainly. */
const FORMATS: Record<string, string> = {
  uuid: 'must be a UUID',
  datetime: 'must be an ISO 8601 date-time, like 2025-01-31T12:00:00Z',
  date: 'must be an ISO 8601 date, like 2025-01-31',
  url: 'must be a URL',
  email: 'must be an email address',
  regex: 'is not in the expected format',
};

/** `1 item`, `3 items`. */
function count(n: number, unit: string): string {
  return `${n} ${unit}${n === 1 ? '' : 's'}`;
}

/** zod's type names as a YAML author knows them. */
function noun(type: string): string {
  const names: Record<string, string> = {
    array: 'a list',
    object: 'a mapping',
    record: 'a mapping',
    map: 'a mapping',
    string: 'text',
    number: 'a number',
    int: 'a whole number',
    boolean: 'true or false',
    null: 'null',
  };
  return names[type] ?? `a ${type}`;
}

/** Parses `input` with `schema`, or throws a ContractViolationError listing every problem. */
export function parseContract<T extends z.ZodType>(schema: T, input: unknown): z.infer<T> {
  const result = schema.safeParse(input);
  if (!result.success) throw new ContractViolationError(formatIssues(result.error));
  return result.data;
}
