import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { ensureDatabase, migrate, readMigrations } from '../../db/migrate.ts';
import { approvalPrompt, fitsInNotice } from '../../pipeline/approvals/notifyApprovers.ts';
import type { Approval } from '../../db/approvals.ts';
import { dropDatabase } from '../helpers/dropDatabase.ts';
import { serverUrl, uniqueDatabaseName } from '../helpers/serverUrl.ts';

const created: string[] = [];
afterAll(async () => {
  for (const name of created) await dropDatabase(name);
});

const TRACE = 'ab'.repeat(16);
const SHA = 'cd'.repeat(32);

describe('0010: approval notices move into the outbound ledger', () => {
  it('moves every approval_notices row over with its state, text and buttons, and drops the table', async () => {
    const name = uniqueDatabaseName('awooop_t');
    created.push(name);
    const url = serverUrl(name);
    await ensureDatabase(url);
    // Migrate to 0009 by hand (the runner always goes to the last file), recording each
    // version as the runner does so that it later applies only 0010.
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      await client.query(`CREATE TABLE schema_migrations (
        version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,
        applied_at timestamptz NOT NULL DEFAULT now())`);
      for (const file of (await readMigrations()).filter((f) => f.version <= 9)) {
        await client.query(file.sql);
        await client.query(
          'INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)',
          [file.version, file.name, file.checksum],
        );
      }
      await client.query(
        `INSERT INTO projects (project_id, display_name, created_by) VALUES ('acme', 'acme', 't')`,
      );
      const runId = crypto.randomUUID();
      const eventId = crypto.randomUUID();
      await client.query(
        `INSERT INTO conversation_events (event_id, project_id, channel, account_id, external_event_id, trace_id, body)
         VALUES ($1, 'acme', 'telegram', 'tg', 'u1', $2, '{}')`,
        [eventId, TRACE],
      );
      await client.query(
        `INSERT INTO runs (run_id, project_id, event_id, trace_id, channel, account_id, conversation_key, state, deadline_at)
         VALUES ($1, 'acme', $2, $3, 'telegram', 'tg', 'telegram/tg/dm/1', 'WAITING_APPROVAL', now() + interval '1 hour')`,
        [runId, eventId, TRACE],
      );
      const approval = async (callIndex: number, args: Record<string, unknown>) => {
        const { rows } = await client.query<{ approval_id: string }>(
          `INSERT INTO approvals (project_id, run_id, trace_id, step_index, call_index, agent, tool, risk,
                                  arguments, call_sha256, reasons, expires_at)
           VALUES ('acme', $1, $2, 0, $3, 'helper', 'ops.restart', 'write', $4, $5,
                   '{grant_requires_approval}', now() + interval '1 hour')
           RETURNING approval_id`,
          [runId, TRACE, callIndex, JSON.stringify(args), SHA],
        );
        return rows[0]!.approval_id;
      };
      const short = await approval(0, { service: 'billing' });
      const long = await approval(1, { script: 'x'.repeat(5000) });
      await client.query(
        `INSERT INTO approval_notices (project_id, approval_id, recipient, status, lease_until, external_message_id, error_code)
         VALUES ('acme', $1, '5551', 'sent', NULL, '77', NULL),
                ('acme', $1, '5552', 'sending', now() + interval '1 minute', NULL, NULL),
                ('acme', $2, '5551', 'queued', NULL, NULL, 'CHANNEL_UNAVAILABLE'),
                ('acme', $2, '5552', 'failed', NULL, NULL, 'CHANNEL_REJECTED')`,
        [short, long],
      );

      // 0010 first; the migrations after it apply too (the runner goes to the last file).
      expect((await migrate(url)).applied[0]).toBe('0010_one_outbox.sql');

      const { rows } = await client.query<{
        approval_id: string;
        recipient: string;
        kind: string;
        status: string;
        attempts: number;
        method: string | null;
        external_message_id: string | null;
        error_code: string | null;
        leased: boolean;
        buttons: string[];
        text: string;
        run_id: string;
        trace_id: string;
      }>(
        `SELECT approval_id, recipient, kind, status, attempts, method, external_message_id,
                error_code, lease_until IS NOT NULL AS leased, buttons, text, run_id, trace_id
           FROM outbound_messages ORDER BY approval_id = $1 DESC, recipient`,
        [short],
      );
      expect(
        rows.map((r) => [
          r.recipient,
          r.status,
          r.attempts,
          r.method,
          r.external_message_id,
          r.error_code,
          r.leased,
        ]),
      ).toEqual([
        ['5551', 'sent', 1, 'askApprover', '77', null, false],
        ['5552', 'sending', 1, null, null, null, true],
        ['5551', 'queued', 0, null, null, 'CHANNEL_UNAVAILABLE', false],
        ['5552', 'failed', 1, null, null, 'CHANNEL_REJECTED', false],
      ]);
      for (const r of rows)
        expect([r.kind, r.run_id, r.trace_id]).toEqual(['approval', runId, TRACE]);
      const [sentShort, , queuedLong] = rows;
      // The buttons agree with what the decider accepts from a channel (fitsInNotice).
      const asApproval = (id: string, args: Record<string, unknown>) =>
        ({
          approvalId: id,
          projectId: 'acme',
          runId,
          agent: 'helper',
          tool: 'ops.restart',
          risk: 'write',
          reasons: ['grant_requires_approval'],
          expiresAt: Date.now() + 3_600_000,
          callSha256: SHA,
          arguments: args,
        }) as unknown as Approval;
      expect(fitsInNotice(asApproval(short, { service: 'billing' }))).toBe(true);
      expect(sentShort!.buttons).toEqual(['approved', 'rejected']);
      expect(fitsInNotice(asApproval(long, { script: 'x'.repeat(5000) }))).toBe(false);
      expect(queuedLong!.buttons).toEqual(['rejected']);
      const head = approvalPrompt(asApproval(short, { service: 'billing' })).text.split(
        'Expires:',
      )[0];
      expect(sentShort!.text.startsWith(head!)).toBe(true);
      expect(sentShort!.text).toContain(`Approval: ${short}`);
      expect(sentShort!.text).toContain('"service": "billing"');
      expect(queuedLong!.text).toContain(`Approval: ${long}`);
      expect(queuedLong!.text).toContain(
        `… (cut: read them in full with \`awooop approvals list --project acme --run ${runId} --json\``,
      );
      expect(queuedLong!.text.length).toBeLessThanOrEqual(4096);

      const gone = await client.query(`SELECT to_regclass('approval_notices') AS t`);
      expect(gone.rows[0].t).toBeNull();
      const grant = await client.query(
        `SELECT has_column_privilege('awooop_sweeper', 'outbound_messages', 'approval_id', 'SELECT') AS ok`,
      );
      expect(grant.rows[0].ok).toBe(true);
      // One row per approval and recipient; an answer keeps one per (kind, chunk).
      await expect(
        client.query(
          `INSERT INTO outbound_messages (project_id, run_id, trace_id, kind, chunk_index, chunk_count, text, format, approval_id, recipient, buttons)
           VALUES ('acme', $1, $2, 'approval', 0, 1, 't', 'plain', $3, '5551', '{rejected}')`,
          [runId, TRACE, short],
        ),
      ).rejects.toThrow(/outbound_messages_approval_recipient/);
      await expect(
        client.query(
          `INSERT INTO outbound_messages (project_id, run_id, trace_id, kind, chunk_index, chunk_count, text, format)
           VALUES ('acme', $1, $2, 'approval', 0, 1, 't', 'plain')`,
          [runId, TRACE],
        ),
      ).rejects.toThrow(/outbound_messages_approval_check/);
      await expect(
        client.query(
          `INSERT INTO outbound_messages (project_id, run_id, trace_id, kind, chunk_index, chunk_count, text, format, approval_id, recipient, buttons)
           VALUES ('acme', $1, $2, 'approval', 0, 1, 't', 'plain', $3, '5553', '{maybe}')`,
          [runId, TRACE, short],
        ),
      ).rejects.toThrow(/outbound_messages_approval_check/);
    } finally {
      await client.end();
    }
  });
});
