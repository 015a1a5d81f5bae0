-- The Discord channel.
--
-- Discord messages arrive over the Gateway (and button presses on the Interactions endpoint)
-- of a `discord` account: the events and their runs say so.
ALTER TABLE conversation_events DROP CONSTRAINT conversation_events_channel_check;
ALTER TABLE conversation_events ADD CONSTRAINT conversation_events_channel_check
  CHECK (channel IN ('telegram', 'line', 'slack', 'discord', 'api'));

-- Discord's markdown: the ledger records that format for a Discord chunk, so the row says how
-- its text was escaped (markdown characters backslash-escaped, code kept).
ALTER TABLE outbound_messages DROP CONSTRAINT outbound_messages_format_check;
ALTER TABLE outbound_messages ADD CONSTRAINT outbound_messages_format_check
  CHECK (format IN ('plain', 'HTML', 'MarkdownV2', 'mrkdwn', 'discord'));

-- An approval decided by a button pressed in Discord says so.
ALTER TABLE approvals DROP CONSTRAINT approvals_decided_via_check;
ALTER TABLE approvals ADD CONSTRAINT approvals_decided_via_check
  CHECK (decided_via IN ('api', 'telegram', 'slack', 'discord', 'cli', 'sweeper'));
