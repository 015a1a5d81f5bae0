import type { DatabasePool } from 'slonik';
import { readAllSealedSecrets, readSealedSecret } from '../../db/secrets.ts';
import { withProject } from '../../db/withProject.ts';
import { AppError, NonRetryableError } from '../errors.ts';
import { openSecret, secretAad } from './secretBox.ts';

/** Turns `secret:` / `env:` refs into values at the last moment, for one project at a time. */
export type SecretResolver = {
  /** The value of a ref for a project; refuses a missing secret with a clear code. */
  resolve(projectId: string, ref: string): Promise<string>;
  /** Every credential value a project could leak (its secrets and the env refs it used), for redaction. */
  knownValues(projectId: string): Promise<string[]>;
};

/**
 * A resolver over the `secrets` table (sealed with `key`) and the process env, of which only
 * the variables in `envAllowed` (the platform's `AWOOOP_ENV_SECRETS`) may be read: apply
 * refuses other `env:` refs, and this refuses them again for a contract stored before (or
 * around) that check. Values are cached for `ttlMs` so a hot path does not decrypt per
 * message; a rotated secret is picked up within that time.
 */
export function createSecretResolver({
  pool,
  key,
  env = process.env,
  envAllowed = [],
  ttlMs = 30_000,
  now = Date.now,
}: {
  pool: DatabasePool;
  key: Buffer | null;
  env?: NodeJS.ProcessEnv;
  /** Names of the env variables `env:` refs may read. @defaultValue none */
  envAllowed?: readonly string[];
  ttlMs?: number;
  now?: () => number;
}): SecretResolver {
  const cache = new Map<string, { value: string; until: number }>();
  const envUsed = new Map<string, Set<string>>();

  async function resolve(projectId: string, ref: string): Promise<string> {
    const cacheKey = `${projectId}\u0000${ref}`;
    const hit = cache.get(cacheKey);
    if (hit && hit.until > now()) return hit.value;
    const [scheme, name] = splitRef(ref);
    let value: string;
    if (scheme === 'env') {
      if (!envAllowed.includes(name)) {
        throw new NonRetryableError(
          'SECRET_REF_NOT_ALLOWED',
          `env ${name} is not in the platform's AWOOOP_ENV_SECRETS, so ${ref} cannot be read`,
        );
      }
      const v = env[name];
      if (v === undefined || v === '') {
        throw new NonRetryableError('SECRET_MISSING', `env ${name} is not set (ref ${ref})`);
      }
      value = v;
      const used = envUsed.get(projectId) ?? new Set<string>();
      used.add(value);
      envUsed.set(projectId, used);
    } else {
      if (!key) {
        throw new NonRetryableError(
          'SECRET_KEY_MISSING',
          `AWOOOP_SECRET_KEY is not set, so ${ref} cannot be read`,
        );
      }
      const sealed = await withProject(pool, projectId, (tx) =>
        readSealedSecret(tx, projectId, name),
      );
      if (!sealed) {
        throw new NonRetryableError(
          'SECRET_MISSING',
          `project ${projectId} has no secret "${name}"; set it with awooop secrets set`,
        );
      }
      value = openSecret(key, sealed, secretAad(projectId, name));
    }
    cache.set(cacheKey, { value, until: now() + ttlMs });
    return value;
  }

  // Every stage that redacts asks for these; reading and opening every secret per run was a
  // transaction and a decrypt per secret each time. Cached as long as a resolved value is.
  const sealedValues = new Map<string, { values: string[]; until: number }>();
  async function openAll(projectId: string): Promise<string[]> {
    const hit = sealedValues.get(projectId);
    if (hit && hit.until > now()) return hit.values;
    const values: string[] = [];
    if (key) {
      const sealed = await withProject(pool, projectId, (tx) =>
        readAllSealedSecrets(tx, projectId),
      );
      for (const s of sealed) {
        try {
          values.push(openSecret(key, s, secretAad(projectId, s.name)));
        } catch {
          // A secret sealed under another key cannot leak through us either.
        }
      }
    }
    if (ttlMs > 0) sealedValues.set(projectId, { values, until: now() + ttlMs });
    return values;
  }

  async function knownValues(projectId: string): Promise<string[]> {
    return [...new Set([...(envUsed.get(projectId) ?? []), ...(await openAll(projectId))])];
  }

  return { resolve, knownValues };
}

function splitRef(ref: string): ['secret' | 'env', string] {
  const match = /^(secret|env):(.+)$/.exec(ref);
  if (!match) throw new AppError('SECRET_REF_INVALID', 'not a secret:NAME or env:NAME reference');
  return [match[1] as 'secret' | 'env', match[2]!];
}
