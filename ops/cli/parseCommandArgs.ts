import { parseArgs, type ParseArgsConfig } from 'node:util';
import { CONTRACT_KINDS, type ContractKind } from '../../pipeline/contracts/common.ts';
import { UsageError } from './UsageError.ts';

/** `parseArgs` in strict mode, with its errors turned into usage errors naming the option. */
export function parseCommandArgs<T extends NonNullable<ParseArgsConfig['options']>>(
  args: string[],
  options: T,
) {
  try {
    return parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (error) {
    throw new UsageError((error as Error).message.replace(/\. To specify a positional.*$/s, ''));
  }
}

/** Parses `KIND/NAME`, e.g. `agent/sre`. */
export function parseContractRef(value: string | undefined): { kind: ContractKind; name: string } {
  const match = /^([a-z_]+)\/([a-z][a-z0-9_-]*)$/.exec(value ?? '');
  if (!match)
    throw new UsageError(
      `contract: expected KIND/NAME (for example agent/sre), got ${JSON.stringify(value ?? '')}`,
    );
  const kind = match[1] as ContractKind;
  if (!CONTRACT_KINDS.includes(kind)) {
    throw new UsageError(
      `contract: unknown kind "${match[1]}"; kinds are ${CONTRACT_KINDS.join(', ')}`,
    );
  }
  return { kind, name: match[2]! };
}

/** A positive integer option, e.g. `--version 3`. */
export function parsePositiveInt(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^[1-9]\d{0,8}$/.test(value))
    throw new UsageError(`--${name}: expected a positive integer, got ${JSON.stringify(value)}`);
  return Number(value);
}

/** `--project P`, required. */
export function requireProject(value: string | undefined): string {
  if (!value) throw new UsageError('--project: required for this command');
  if (!/^[a-z][a-z0-9_-]{1,62}$/.test(value))
    throw new UsageError(`--project: not a project id: ${JSON.stringify(value)}`);
  return value;
}
