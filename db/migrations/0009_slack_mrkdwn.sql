-- Slack messages are written in mrkdwn: the ledger records that format for a Slack chunk, so
-- the row says how its text was escaped (`&`, `<`, `>` as entities, code fences kept).
ALTER TABLE outbound_messages DROP CONSTRAINT outbound_messages_format_check;
ALTER TABLE outbound_messages ADD CONSTRAINT outbound_messages_format_check
  CHECK (format IN ('plain', 'HTML', 'MarkdownV2', 'mrkdwn'));
