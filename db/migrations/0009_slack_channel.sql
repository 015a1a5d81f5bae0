-- The Slack channel.
--
-- Slack messages are written in mrkdwn: the ledger records that format for a Slack chunk, so
-- the row says how its text was escaped (`&`, `<`, `>` as entities, code fences kept).
ALTER TABLE outbound_messages DROP CONSTRAINT outbound_messages_format_check;
ALTER TABLE outbound_messages ADD CONSTRAINT outbound_messages_format_check
  CHECK (format IN ('plain', 'HTML', 'MarkdownV2', 'mrkdwn'));

-- An approval decided by a Block Kit button pressed in Slack says so.
ALTER TABLE approvals DROP CONSTRAINT approvals_decided_via_check;
ALTER TABLE approvals ADD CONSTRAINT approvals_decided_via_check
  CHECK (decided_via IN ('api', 'telegram', 'slack', 'cli', 'sweeper'));
