import { formatPath } from '../contracts/formatIssues.ts';

/** A whole `env:NAME` reference, as `SecretRef` accepts it. */
const ENV_REF = /^env:([A-Za-z_][A-Za-z0-9_.-]{0,127})$/;

/**
 * One issue per `env:` reference in a tenant file that names a variable outside `allowed`
 * (the platform's `AWOOOP_ENV_SECRETS`), at the path of the field that holds it. An `env:` ref
 * reads the platform's own environment, so without this a tenant could hand, say,
 * `env:AWOOOP_SECRET_KEY` to its tool server as a header. Every string of the file is looked
 * at, not a list of credential fields, so a credential field added later is covered too.
 */
export function envRefIssues(tenant: unknown, allowed: readonly string[]): string[] {
  const issues: string[] = [];
  const walk = (value: unknown, path: (string | number)[]) => {
    if (typeof value === 'string') {
      const name = ENV_REF.exec(value)?.[1];
      if (name !== undefined && !allowed.includes(name)) {
        issues.push(
          `${formatPath(path)}: env:${name} is not a variable the platform lets tenants read (AWOOOP_ENV_SECRETS${allowed.length > 0 ? ` allows ${allowed.join(', ')}` : ' is empty'}); use a secret: reference (awooop secrets set)`,
        );
      }
    } else if (Array.isArray(value)) {
      value.forEach((item, i) => walk(item, [...path, i]));
    } else if (value !== null && typeof value === 'object') {
      for (const [key, item] of Object.entries(value)) walk(item, [...path, key]);
    }
  };
  walk(tenant, []);
  return issues;
}
