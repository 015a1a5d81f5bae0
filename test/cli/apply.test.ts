import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/runCli.ts';
import { tableCounts } from '../helpers/tableCounts.ts';
import { useTestDatabase } from '../helpers/testDatabase.ts';

const db = useTestDatabase();
const EXAMPLES = fileURLToPath(new URL('../../examples/', import.meta.url));
const awooop = (...args: string[]) =>
  runCli(['--actor', 'test:ci', ...args], { DATABASE_URL: db().url });
let work: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'awooop-apply-'));
  await cp(EXAMPLES, work, { recursive: true });
});
afterAll(() => rm(work, { recursive: true, force: true }));

/** A copy of the awoooi example with `edit` applied to its YAML text. */
async function editedAwoooi(name: string, edit: (yaml: string) => string): Promise<string> {
  const original = await readFile(join(work, 'awoooi/tenant.yaml'), 'utf8');
  const path = join(work, `awoooi/${name}.yaml`);
  const changed = edit(original);
  expect(changed).not.toBe(original);
  await writeFile(path, changed);
  return path;
}

describe('awooop apply', () => {
  it('applies the awoooi example: project awoooi, every contract published and active with id and hash', async () => {
    const result = await awooop('apply', '-f', join(work, 'awoooi/tenant.yaml'));
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('applied');
    expect(result.stdout).toMatch(/\+ agent\/sre v1 created/);
    expect(result.stdout).toContain('flow default: mode shadow');

    const owner = await db().owner();
    const { rows: projects } = await owner.query('SELECT project_id FROM projects');
    expect(projects).toEqual([{ project_id: 'awoooi' }]);
    const { rows: active } = await owner.query(`
      SELECT a.kind, a.name, r.revision_id, r.body_hash, r.status FROM contract_active a
        JOIN contract_revisions r USING (revision_id) WHERE a.project_id = 'awoooi' ORDER BY 1, 2`);
    expect(active.map((r) => `${r.kind}/${r.name}`)).toEqual([
      'agent/sre',
      'channel/api',
      'channel/ops-telegram',
      'mcp_gateway/gateway',
      'policy/default',
      'project/project',
      'runtime/runtime',
    ]);
    for (const row of active) {
      expect(row.revision_id).toMatch(/^[0-9a-f-]{36}$/);
      expect(row.body_hash).toMatch(/^[0-9a-f]{64}$/);
      expect(row.status).toBe('published');
    }
    const { rows: modes } = await owner.query(
      "SELECT flow, mode FROM project_migration_state WHERE project_id = 'awoooi'",
    );
    expect(modes).toEqual([{ flow: 'default', mode: 'shadow' }]);
    const { rows: artifacts } = await owner.query(
      "SELECT ref, kind FROM artifact_refs WHERE project_id = 'awoooi'",
    );
    expect(artifacts).toEqual([{ ref: 'prompts/sre.md', kind: 'prompt' }]);
  });

  it('applying the same file again creates nothing and says so', async () => {
    const owner = await db().owner();
    const before = await tableCounts(owner);
    const result = await awooop('apply', '-f', join(work, 'awoooi/tenant.yaml'));
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('awoooi: nothing to apply, 7 contracts unchanged');
    expect(await tableCounts(owner)).toEqual(before);
  });

  it('applies the ewoooc example in canary mode beside awoooi', async () => {
    const result = await awooop('apply', '-f', join(work, 'ewoooc/tenant.yaml'));
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/\+ agent\/openclaw-biz v1 created/);
    const owner = await db().owner();
    const { rows } = await owner.query(
      "SELECT mode, canary FROM project_migration_state WHERE project_id = 'ewoooc'",
    );
    expect(rows).toEqual([
      {
        mode: 'canary',
        canary: { percent: 10, allowPeers: ['line:U4af4980629a1b2c3d4e5f60718293a4b'] },
      },
    ]);
  });

  it('a changed file makes new revisions only for what changed and prints the diff', async () => {
    const path = await editedAwoooi('more-steps', (y) => y.replace('maxSteps: 6', 'maxSteps: 7'));
    const result = await awooop('apply', '-f', path);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/~ agent\/sre v2 updated \(was v1\)/);
    expect(result.stdout).toContain('~ maxSteps: 6 → 7');
    expect(result.stdout).toContain('1 updated, 6 unchanged');
    const owner = await db().owner();
    const { rows } = await owner.query(
      "SELECT kind, max(version) AS v FROM contract_revisions WHERE project_id = 'awoooi' GROUP BY kind ORDER BY kind",
    );
    expect(rows.find((r) => r.kind === 'agent')?.v).toBe(2);
    expect(rows.filter((r) => r.kind !== 'agent').every((r) => r.v === 1)).toBe(true);

    // going back to the original body re-activates v1 instead of writing a v3
    const back = await awooop('apply', '-f', join(work, 'awoooi/tenant.yaml'));
    expect(back.stdout).toMatch(/~ agent\/sre v1 reactivated \(was v2\)/);
    const { rows: versions } = await owner.query(
      "SELECT count(*)::int AS n FROM contract_revisions WHERE name = 'sre'",
    );
    expect(versions).toEqual([{ n: 2 }]);
  });

  it('an invalid file changes nothing and names the bad field', async () => {
    const owner = await db().owner();
    const before = await tableCounts(owner);
    const typo = await editedAwoooi('typo', (y) => y.replace('    prompt:\n', '    promt:\n'));
    const result = await awooop('apply', '-f', typo);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('nothing was written');
    expect(result.stderr).toContain('agents.sre.promt: unknown field');

    const wrongHash = await editedAwoooi('hash', (y) =>
      y.replace('3b06d7aed37293f3', '0000000000000000'),
    );
    const hashResult = await awooop('apply', '-f', wrongHash);
    expect(hashResult.code).toBe(1);
    expect(hashResult.stderr).toMatch(
      /agents\.sre\.prompt\.sha256: does not match prompts\/sre\.md, whose SHA-256 is 3b06d7ae/,
    );

    const ceiling = await editedAwoooi('ceiling', (y) =>
      y.replace('- { name: get_pods, risk: read }', '- { name: get_pods, risk: destructive }'),
    );
    const ceilingResult = await awooop('apply', '-f', ceiling);
    expect(ceilingResult.code).toBe(1);
    expect(ceilingResult.stderr).toContain(
      'agents.sre.tools[0]: tool "k8s.get_pods" is destructive, above the agent\'s safety ceiling "read"',
    );

    const badYaml = await editedAwoooi('syntax', (y) =>
      y.replace('apiVersion: awooop/v1', 'apiVersion: [awooop/v1'),
    );
    const yamlResult = await awooop('apply', '-f', badYaml);
    expect(yamlResult.code).toBe(1);
    expect(yamlResult.stderr).toMatch(/syntax\.yaml:\d+:/);

    expect(await tableCounts(owner)).toEqual(before);
  });

  // Regression (issue 12, item 14): these fields were stored and then ignored by the runtime.
  it('refuses, by name, every field the runtime does not act on yet, and writes nothing', async () => {
    const owner = await db().owner();
    const before = await tableCounts(owner);
    const path = await editedAwoooi('unsupported', (y) =>
      y
        .replace(
          '  acl:\n',
          '  owners: ["email:sre-lead@awoooi.example"]\n' +
            '  dataBoundary: { region: ap-northeast-1, retentionDays: 90 }\n' +
            '  budget: { monthlyLimitUsd: 200 }\n  acl:\n',
        )
        .replace(
          '    channel: ops-telegram\n',
          '    channel: ops-telegram\n    approverRole: operator\n',
        )
        .replace(
          '    rate:\n',
          '    budget: { perRunUsd: 0.5 }\n    privacy: { storeTranscripts: false }\n    rate:\n',
        )
        .replace(
          '  approvalTtlSeconds: 1800\n',
          '  approvalTtlSeconds: 1800\n  timeouts: { stageMs: 5000 }\n' +
            '  retry: { attempts: 3, backoffMs: 200 }\n',
        ),
    );
    const result = await awooop('apply', '-f', path);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('nothing was written');
    for (const field of [
      'project.owners',
      'project.dataBoundary',
      'policies.default.privacy.storeTranscripts',
      'runtime.timeouts.stageMs',
      'runtime.retry.attempts',
      'runtime.retry.backoffMs',
    ]) {
      expect(result.stderr).toMatch(
        new RegExp(`${field.replace(/[.[\]]/g, '\\$&')}: .*not supported yet`),
      );
    }
    // Budgets are enforced now (issue 15): the same file's budget blocks are not refused.
    expect(result.stderr).not.toMatch(/budget/);
    // Operators no longer decide approvals (issue 15, item 7): refused by name, with the fix.
    expect(result.stderr).toContain(
      'project.approvals.approverRole: "operator" no longer decides approvals: give the deciding members the approver role',
    );
    expect(await tableCounts(owner)).toEqual(before);
  });

  // Regression (issue 15, item 7): apply refused the viewer role as granting nothing; it
  // grants the permission table's reads now.
  it('accepts an ACL member with the viewer role, and stores it', async () => {
    const path = await editedAwoooi('viewer', (y) =>
      y.replace(
        '  approvals:\n',
        '      - subject: "email:auditor@awoooi.example"\n        roles: [viewer]\n  approvals:\n',
      ),
    );
    const result = await awooop('apply', '-f', path);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const shown = await awooop('contracts', 'show', 'project/project', '--project', 'awoooi');
    expect(shown.code).toBe(0);
    expect(shown.stdout).toMatch(/"viewer"\s*\],\s*"subject": "email:auditor@awoooi\.example"/);
  });

  it('refuses a money budget over a model with no price, naming the model, and writes nothing', async () => {
    const owner = await db().owner();
    const before = await tableCounts(owner);
    const path = await editedAwoooi('unpriced', (y) =>
      y
        .replace('  acl:\n', '  budget: { monthlyLimitUsd: 200, alertAtPercent: 90 }\n  acl:\n')
        .replace(
          '      primary: { provider: echo }\n',
          '      primary: { provider: openai_compatible, model: local-7b, baseUrl: "http://127.0.0.1:11434/v1" }\n',
        ),
    );
    const result = await awooop('apply', '-f', path);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('nothing was written');
    expect(result.stderr).toMatch(
      /policies\.default\.modelRoute\.primary\.model: model "local-7b" has no price in policies\.default\.prices/,
    );
    expect(await tableCounts(owner)).toEqual(before);

    const priced = await editedAwoooi('priced', (y) =>
      y
        .replace('  acl:\n', '  budget: { monthlyLimitUsd: 200, alertAtPercent: 90 }\n  acl:\n')
        .replace(
          '      primary: { provider: echo }\n',
          '      primary: { provider: openai_compatible, model: local-7b, baseUrl: "http://127.0.0.1:11434/v1" }\n' +
            '    prices:\n      local-7b: { inputUsdPerMTok: 0.2, outputUsdPerMTok: 0.6 }\n',
        ),
    );
    const applied = await awooop('apply', '-f', priced, '--dry-run');
    expect(applied.stderr).toBe('');
    expect(applied.code).toBe(0);
  });

  it('a dry run reports what would change and writes nothing', async () => {
    const owner = await db().owner();
    const before = await tableCounts(owner);
    const path = await editedAwoooi('dry', (y) =>
      y.replace('approvalTtlSeconds: 1800', 'approvalTtlSeconds: 900'),
    );
    const result = await awooop('apply', '-f', path, '--dry-run');
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^dry run: applied/);
    expect(result.stdout).toContain('~ approvalTtlSeconds: 1800 → 900');
    expect(await tableCounts(owner)).toEqual(before);
  });
});

describe('awooop apply audit', () => {
  it('audits a renamed project as an update of the project row and its contract', async () => {
    const path = await editedAwoooi('renamed', (y) =>
      y.replace('displayName: AwoooI infrastructure operations', 'displayName: AwoooI SRE'),
    );
    expect((await awooop('apply', '-f', path)).code).toBe(0);
    const owner = await db().owner();
    const { rows } = await owner.query(
      "SELECT action, detail->>'display_name' AS name FROM audit_events WHERE project_id = 'awoooi' AND chain = 'project' ORDER BY seq",
    );
    expect(rows).toEqual([
      { action: 'project.create', name: 'AwoooI infrastructure operations' },
      { action: 'project.update', name: 'AwoooI SRE' },
    ]);
    const { rows: project } = await owner.query(
      "SELECT display_name FROM projects WHERE project_id = 'awoooi'",
    );
    expect(project).toEqual([{ display_name: 'AwoooI SRE' }]);
  });
});

describe('awooop contracts and audit', () => {
  it('lists, shows, diffs and rolls back', async () => {
    const list = await awooop('contracts', 'list');
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(/awoooi\s+agent\/sre\s+v1\s+v2/);
    expect(list.stdout).toMatch(/ewoooc\s+agent\/openclaw-biz\s+v1/);

    const show = await awooop(
      'contracts',
      'show',
      'agent/sre',
      '--project',
      'awoooi',
      '--version',
      '2',
      '--json',
    );
    expect(JSON.parse(show.stdout)).toMatchObject({
      version: 2,
      status: 'published',
      body: { maxSteps: 7 },
    });

    const diff = await awooop('contracts', 'diff', 'agent/sre', '--project', 'awoooi', '1', '2');
    expect(diff.stdout).toContain('~ maxSteps: 6 → 7');

    const activate = await awooop(
      'contracts',
      'activate',
      'agent/sre',
      '--project',
      'awoooi',
      '--version',
      '2',
    );
    expect(activate.stdout).toContain('active v1 → v2');
    const rollback = await awooop('contracts', 'rollback', 'agent/sre', '--project', 'awoooi');
    expect(rollback.stdout).toContain('active v2 → v1 (rollback)');
    const none = await awooop('contracts', 'rollback', 'agent/sre', '--project', 'awoooi');
    expect(none.code).toBe(1);
    expect(none.stderr).toContain('REVISION_NOT_FOUND');
  });

  it('says a diff or rollback of a first version needs a second, and names a missing version', async () => {
    const diff = await awooop('contracts', 'diff', 'agent/openclaw-biz', '--project', 'ewoooc');
    expect(diff.code).toBe(1);
    expect(diff.stderr).toContain('agent/openclaw-biz v1 is its first version; a diff needs two');
    const rollback = await awooop(
      'contracts',
      'rollback',
      'agent/openclaw-biz',
      '--project',
      'ewoooc',
    );
    expect(rollback.code).toBe(1);
    expect(rollback.stderr).toContain('a rollback needs a second version');
    const missing = await awooop('contracts', 'diff', 'agent/sre', '--project', 'awoooi', '1', '9');
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('agent/sre has no version 9');
  });

  it('finds a tampered audit row', async () => {
    const clean = await awooop('audit', 'verify');
    expect(clean.stdout).toContain('ok: no tampering found');
    expect(clean.code).toBe(0);
    const owner = await db().owner();
    await owner.query('BEGIN');
    await owner.query("SET LOCAL session_replication_role = 'replica'");
    await owner.query(
      "UPDATE audit_events SET actor = 'mallory' WHERE project_id = 'ewoooc' AND action = 'project.create'",
    );
    await owner.query('COMMIT');
    const tampered = await awooop('audit', 'verify');
    expect(tampered.code).toBe(1);
    expect(tampered.stdout).toMatch(
      /TAMPERED ewoooc project seq 1: row content does not match its hash/,
    );
    const scoped = await awooop('audit', 'verify', '--project', 'awoooi');
    expect(scoped.code).toBe(0);
  });

  it('names the argument or variable that is wrong', async () => {
    const missing = await awooop('contracts', 'show', 'agent/sre');
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('--project: required');
    const badKind = await awooop('contracts', 'show', 'robot/sre', '--project', 'awoooi');
    expect(badKind.stderr).toContain('unknown kind "robot"');
    const unknownOption = await awooop('apply', '--file', 'x.yaml', '--force');
    expect(unknownOption.code).toBe(2);
    expect(unknownOption.stderr).toContain("Unknown option '--force'");
    const badPort = await runCli(['contracts', 'list'], { DATABASE_URL: db().url, PORT: 'eighty' });
    expect(badPort.code).toBe(2);
    expect(badPort.stderr).toMatch(/PORT: /);
    const secret = 'short-secret-value';
    const badToken = await runCli(['contracts', 'list'], {
      DATABASE_URL: db().url,
      AWOOOP_ADMIN_TOKEN: secret,
    });
    expect(badToken.stderr).toContain('AWOOOP_ADMIN_TOKEN: must be at least 24 characters');
    expect(badToken.stderr).not.toContain(secret);
  });
});

describe('awooop runs list', () => {
  it('names --project when it is no project, rather than printing an empty list', async () => {
    const unknown = await awooop('runs', 'list', '--project', 'nosuch');
    expect(unknown.code).not.toBe(0);
    expect(unknown.stderr).toContain('--project: no project "nosuch"');
    const known = await awooop('runs', 'list', '--project', 'awoooi');
    expect(known.code).toBe(0);
    expect(known.stdout).toContain('no runs');
  });
});
