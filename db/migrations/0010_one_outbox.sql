-- One outbox: an approval notice is an `outbound_messages` row of its own kind, claimed,
-- sent and settled by the same loop as a run's answer, so one ledger holds everything AwoooP
-- sends and its "at most once, never lost" covers approvers' notices too.
--
-- An `approval` row is one approval's ask to one recipient (an id without its subject
-- prefix, on the project's approvals account); it carries the notice's plain text and the
-- buttons it offers (Reject alone when the arguments had to be cut), exactly as sent.
ALTER TABLE outbound_messages ADD COLUMN approval_id uuid REFERENCES approvals (approval_id);
ALTER TABLE outbound_messages ADD COLUMN recipient text;
ALTER TABLE outbound_messages ADD COLUMN buttons text[];
ALTER TABLE outbound_messages DROP CONSTRAINT outbound_messages_kind_check;
ALTER TABLE outbound_messages ADD CONSTRAINT outbound_messages_kind_check
  CHECK (kind IN ('reply', 'status', 'failure', 'approval'));
ALTER TABLE outbound_messages ADD CONSTRAINT outbound_messages_approval_check CHECK (
  (kind = 'approval') = (approval_id IS NOT NULL)
  AND (kind = 'approval') = (recipient IS NOT NULL AND length(recipient) > 0)
  AND (kind = 'approval') = (buttons IS NOT NULL)
  AND (buttons IS NULL OR (cardinality(buttons) > 0 AND buttons <@ ARRAY['approved', 'rejected']))
  AND (kind <> 'approval' OR (chunk_index = 0 AND chunk_count = 1)));

-- A run's answer keeps one row per (kind, chunk); an approval has one row per recipient,
-- however many approvals the run asks for.
ALTER TABLE outbound_messages DROP CONSTRAINT outbound_messages_run_id_kind_chunk_index_key;
CREATE UNIQUE INDEX outbound_messages_run_chunk ON outbound_messages (run_id, kind, chunk_index)
  WHERE kind <> 'approval';
CREATE UNIQUE INDEX outbound_messages_approval_recipient ON outbound_messages (approval_id, recipient)
  WHERE kind = 'approval';

-- The sweeper looks for unsent rows of one kind (failure notices, approval notices).
DROP INDEX outbound_messages_pending;
CREATE INDEX outbound_messages_pending ON outbound_messages (kind, updated_at)
  WHERE status IN ('queued', 'sending');

-- The notices already asked or waiting move over, rendered as the notice sender renders
-- them (the arguments as indented JSON, cut to what fits, with Reject alone when cut). A row
-- a sender holds keeps its lease: once it runs out the takeover settles it `uncertain`, as it
-- would any call whose outcome its sender never recorded.
INSERT INTO outbound_messages (project_id, run_id, trace_id, kind, chunk_index, chunk_count, text,
                               format, status, method, attempts, lease_until, external_message_id,
                               error_code, created_at, updated_at, sent_at, approval_id, recipient,
                               buttons)
SELECT n.project_id, a.run_id, a.trace_id, 'approval', 0, 1,
       CASE WHEN length(p.args) <= p.room THEN p.head || E'\n' || p.args
            ELSE p.head || E'\n' || left(p.args, p.room) || E'\n… (cut: read them in full with `awooop approvals list --project '
                 || a.project_id || ' --run ' || a.run_id || ' --json` or the API, and decide there)'
       END,
       'plain', n.status,
       CASE WHEN n.status IN ('sent', 'uncertain') THEN 'askApprover' END,
       CASE WHEN n.status = 'queued' THEN 0 ELSE 1 END,
       n.lease_until, n.external_message_id, n.error_code, n.updated_at, n.updated_at,
       CASE WHEN n.status = 'sent' THEN n.updated_at END,
       n.approval_id, n.recipient,
       CASE WHEN length(p.args) <= p.room THEN ARRAY['approved', 'rejected'] ELSE ARRAY['rejected'] END
  FROM approval_notices n
  JOIN approvals a USING (approval_id)
  CROSS JOIN LATERAL (
    SELECT h.head, least(1500, 4000 - length(h.head) - 20) AS room, jsonb_pretty(a.arguments) AS args
      FROM (SELECT concat_ws(E'\n', 'Approval needed', '', 'Agent: ' || a.agent, 'Tool: ' || a.tool,
                             'Risk: ' || a.risk,
                             'Why: ' || coalesce(nullif(left(array_to_string(a.reasons, ', '), 500), ''), '-'),
                             'Expires: ' || to_char(a.expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
                             'Approval: ' || a.approval_id, 'Call SHA-256: ' || a.call_sha256,
                             'Run: ' || a.run_id, '', 'Arguments:') AS head) h
  ) p;

DROP TABLE approval_notices;

-- The sweeper finds waiting runs with an approval notice left unsent by the row's approval.
GRANT SELECT (approval_id) ON outbound_messages TO awooop_sweeper;
