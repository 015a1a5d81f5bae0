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
 * literal lists what is allowed.
 */
export function formatIssues(error: z.ZodError): string[] {
  return error.issues.flatMap((issue) => {
    const at = (path: Path, message: string) => `${formatPath(path)}: ${message}`;
    switch (issue.code) {
      case 'unrecognized_keys':
        return issue.keys.map((key) => at([...issue.path, key], 'unknown field'));
      case 'invalid_type':
        return [
          at(
            issue.path,
            /received undefined$/.test(issue.message) ? 'required' : plain(issue.message),
          ),
        ];
      case 'invalid_value':
        return [
          at(
            issue.path,
            issue.values.length === 1
              ? `must be ${JSON.stringify(issue.values[0])}`
              : `must be one of: ${issue.values.join(', ')}`,
          ),
        ];
      case 'invalid_union':
        if ('options' in issue && Array.isArray(issue.options)) {
          return [at(issue.path, `must be one of: ${(issue.options as unknown[]).join(', ')}`)];
        }
        return [at(issue.path, plain(issue.message))];
      case 'invalid_key':
        return [
          at(
            issue.path,
            `is not a valid name: ${issue.issues.map((i) => plain(i.message)).join('; ')}`,
          ),
        ];
      default:
        return [at(issue.path, plain(issue.message))];
    }
  });
}

/** zod's default wording, lower-cased where it is ours to say. */
function plain(message: string): string {
  return message
    .replace(/^Invalid input: expected int, received number$/, 'must be a whole number')
    .replace(
      /^Invalid input: expected (\w+), received (\w+)$/,
      (_, want: string, got: string) => `must be ${noun(want)}, not ${noun(got)}`,
    )
    .replace(/^Too small: expected string to have >=1 characters$/, 'must not be empty')
    .replace(
      /^Too small: expected (\w+) to have >=(\d+) (items|characters)$/,
      'needs at least $2 $3',
    )
    .replace(/^Too big: expected (\w+) to have <=(\d+) (items|characters)$/, 'allows at most $2 $3')
    .replace(/^Too small: expected number to be >=(\S+)$/, 'must be at least $1')
    .replace(/^Too big: expected number to be <=(\S+)$/, 'must be at most $1')
    .replace(/^Too small: expected number to be >(\S+)$/, 'must be greater than $1');
}

/** zod's type names as a YAML author knows them. */
function noun(type: string): string {
  const names: Record<string, string> = {
    array: 'a list',
    object: 'a mapping',
    string: 'text',
    number: 'a number',
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
