-- A budget alert reaches the project's owners: one `alert` row of the outbound ledger per
-- owner (an ACL member with the admin role on the project's approvals account), sent by the
-- same claim → send → settle loop as every other row, so it goes out at most once. The
-- alert's key (`<period>/<limit>`) admits one row per owner, as `budget_alerts` admits one
-- alert per period and limit.
ALTER TABLE outbound_messages ADD COLUMN alert_key text;
ALTER TABLE outbound_messages DROP CONSTRAINT outbound_messages_kind_check;
ALTER TABLE outbound_messages ADD CONSTRAINT outbound_messages_kind_check
  CHECK (kind IN ('reply', 'status', 'failure', 'approval', 'alert'));
ALTER TABLE outbound_messages DROP CONSTRAINT outbound_messages_approval_check;
ALTER TABLE outbound_messages ADD CONSTRAINT outbound_messages_approval_check CHECK (
  (kind = 'approval') = (approval_id IS NOT NULL)
  AND (kind IN ('approval', 'alert')) = (recipient IS NOT NULL AND length(recipient) > 0)
  AND (kind = 'approval') = (buttons IS NOT NULL)
  AND (kind = 'alert') = (alert_key IS NOT NULL AND length(alert_key) > 0)
  AND (buttons IS NULL OR (cardinality(buttons) > 0 AND buttons <@ ARRAY['approved', 'rejected']))
  AND (kind NOT IN ('approval', 'alert') OR (chunk_index = 0 AND chunk_count = 1)));

DROP INDEX outbound_messages_run_chunk;
CREATE UNIQUE INDEX outbound_messages_run_chunk ON outbound_messages (run_id, kind, chunk_index)
  WHERE kind IN ('reply', 'status', 'failure');
CREATE UNIQUE INDEX outbound_messages_alert_recipient
  ON outbound_messages (project_id, alert_key, recipient) WHERE kind = 'alert';
