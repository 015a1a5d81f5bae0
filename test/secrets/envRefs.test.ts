import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSecretResolver } from '../../pipeline/secrets/createSecretResolver.ts';
import { runCli } from '../helpers/runCli.ts';
import { tableCounts } from '../helpers/tableCounts.ts';
import { useTestDatabase } from '../helpers/testDatabase.ts';

// Regression (issue 12, item 5): an `env:` ref could name any variable of the platform's
// environment, e.g. env:AWOOOP_SECRET_KEY as a tool server's credential.

const db = useTestDatabase();
const EXAMPLES = fileURLToPath(new URL('../../examples/', import.meta.url));
const PLATFORM_KEY = 'ab'.repeat(32);
let work: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'awooop-envrefs-'));
  await cp(EXAMPLES, work, { recursive: true });
});
afterAll(() => rm(work, { recursive: true, force: true }));

/** `awooop apply` of the awoooi example with its k8s server's token read from `env:<name>`. */
async function applyWithEnvRef(name: string, env: Record<string, string>) {
  const original = await readFile(join(work, 'awoooi/tenant.yaml'), 'utf8');
  const edited = original.replace(
    'KUBE_TOKEN: "secret:awoooi-k8s-readonly-token"',
    `KUBE_TOKEN: "env:${name}"`,
  );
  expect(edited).not.toBe(original);
  const path = join(work, `awoooi/env-${name}.yaml`);
  await writeFile(path, edited);
  return runCli(['--actor', 'test:ci', 'apply', '-f', path], {
    DATABASE_URL: db().url,
    AWOOOP_SECRET_KEY: PLATFORM_KEY,
    ...env,
  });
}

describe('env: references', () => {
  it('refuses at apply a variable outside AWOOOP_ENV_SECRETS, naming the field and the variable, and writes nothing', async () => {
    const owner = await db().owner();
    const before = await tableCounts(owner);
    for (const env of [{}, { AWOOOP_ENV_SECRETS: 'KUBE_TOKEN_RO' }]) {
      const result = await applyWithEnvRef('AWOOOP_SECRET_KEY', env);
      expect(result.code).toBe(1);
      expect(result.stderr).toContain('nothing was written');
      expect(result.stderr).toContain(
        'mcpGateway.servers[0].transport.env.KUBE_TOKEN: env:AWOOOP_SECRET_KEY is not a variable the platform lets tenants read',
      );
      expect(result.stderr).not.toContain(PLATFORM_KEY);
    }
    expect(await tableCounts(owner)).toEqual(before);
  });

  it('applies a variable the platform lists in AWOOOP_ENV_SECRETS', async () => {
    const result = await applyWithEnvRef('KUBE_TOKEN_RO', { AWOOOP_ENV_SECRETS: 'KUBE_TOKEN_RO' });
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('applied');
  });

  it('refuses at resolve time a variable outside the allow-list, whatever a stored contract names', async () => {
    const secrets = createSecretResolver({
      pool: db().pool,
      key: null,
      env: { AWOOOP_SECRET_KEY: PLATFORM_KEY, KUBE_TOKEN_RO: 'read-only-token' },
      envAllowed: ['KUBE_TOKEN_RO'],
    });
    const refused: unknown = await secrets
      .resolve('awoooi', 'env:AWOOOP_SECRET_KEY')
      .catch((error: unknown) => error);
    expect(refused).toMatchObject({ code: 'SECRET_REF_NOT_ALLOWED' });
    expect((refused as Error).message).toContain('AWOOOP_ENV_SECRETS');
    expect((refused as Error).message).not.toContain(PLATFORM_KEY);
    expect(await secrets.resolve('awoooi', 'env:KUBE_TOKEN_RO')).toBe('read-only-token');
    expect(await secrets.knownValues('awoooi')).not.toContain(PLATFORM_KEY);
  });
});
