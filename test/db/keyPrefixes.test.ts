import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { createApiKey, KEY_PREFIX_RANDOM_CHARS, listApiKeys } from '../../db/apiKeys.ts';
import { ensureDatabase, migrate, readMigrations } from '../../db/migrate.ts';
import { upsertProject } from '../../db/projects.ts';
import { withProject } from '../../db/withProject.ts';
import { dropDatabase } from '../helpers/dropDatabase.ts';
import { serverUrl, uniqueDatabaseName } from '../helpers/serverUrl.ts';
import { useTestDatabase } from '../helpers/testDatabase.ts';

const db = useTestDatabase();
const actor = 'test';

const created: string[] = [];
afterAll(async () => {
  for (const name of created) await dropDatabase(name);
});

describe('API key prefixes (issue 12, item 3)', () => {
  // Regression: the prefix was cut after the key's last '_', and base64url has '_' in it, so
  // about half the stored prefixes kept more than 4 random characters and some the whole key.
  it.each(['acme', 'key_prefix-co'])(
    'stores for every one of 2000 keys of %s a fixed-length prefix with at most 4 random characters',
    async (projectId) => {
      const keys = await withProject(db().pool, projectId, async (tx) => {
        await upsertProject(tx, { projectId, displayName: projectId, actor });
        const made = new Map<string, string>();
        for (let i = 0; i < 2000; i += 1) {
          const k = await createApiKey(tx, { projectId, name: `k${i}`, roles: ['client'], actor });
          made.set(k.keyId, k.key);
        }
        return made;
      });
      const fixed = `awk_${projectId}_`;
      const listed = await withProject(db().pool, projectId, (tx) => listApiKeys(tx, projectId));
      expect(listed).toHaveLength(2000);
      const wrong = listed.filter((row) => {
        const key = keys.get(row.keyId)!;
        return (
          row.keyPrefix.length !== fixed.length + KEY_PREFIX_RANDOM_CHARS ||
          !row.keyPrefix.startsWith(fixed) ||
          !key.startsWith(row.keyPrefix)
        );
      });
      expect(wrong.map((row) => row.keyPrefix)).toEqual([]);
      expect(KEY_PREFIX_RANDOM_CHARS).toBeLessThanOrEqual(4);
    },
  );

  it('cuts prefixes stored before 0006 down to the fixed part and 4 random characters', async () => {
    const name = uniqueDatabaseName('awooop_t');
    created.push(name);
    const url = serverUrl(name);
    await ensureDatabase(url);
    // Migrate to 0005 by hand (the runner always goes to the last file), recording each
    // version as the runner does so that it later applies only what follows.
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      await client.query(`CREATE TABLE schema_migrations (
        version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,
        applied_at timestamptz NOT NULL DEFAULT now())`);
      for (const file of (await readMigrations()).filter((f) => f.version <= 5)) {
        await client.query(file.sql);
        await client.query(
          'INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)',
          [file.version, file.name, file.checksum],
        );
      }
      const whole = 'awk_acme_Ab3d_x9Qm1Zr7Tt0Yy2Uu4Ii6Oo8Pp-Ll5Kk3Jj1Hh9Gg';
      await client.query(
        `INSERT INTO projects (project_id, display_name, created_by) VALUES ('acme', 'acme', 't')`,
      );
      await client.query(
        `INSERT INTO api_keys (project_id, name, key_hash, key_prefix, roles, created_by)
         VALUES ('acme', 'leaky', repeat('a', 64), $1, '{client}', 't'),
                ('acme', 'short', repeat('b', 64), 'awk_acme_Zz9_', '{client}', 't')`,
        [whole],
      );

      await migrate(url);

      const { rows } = await client.query<{ name: string; key_prefix: string }>(
        'SELECT name, key_prefix FROM api_keys ORDER BY name',
      );
      expect(rows).toEqual([
        { name: 'leaky', key_prefix: 'awk_acme_Ab3d' },
        { name: 'short', key_prefix: 'awk_acme_Zz9_' },
      ]);
      // and a long prefix cannot be written again
      await expect(
        client.query(`UPDATE api_keys SET key_prefix = $1 WHERE name = 'leaky'`, [whole]),
      ).rejects.toThrow(/api_keys_key_prefix_short/);
    } finally {
      await client.end();
    }
  });
});
