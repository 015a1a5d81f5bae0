-- The email channel.
--
-- Inbound mail becomes conversation events of channel 'email'. The channel names allowed are
-- whatever an earlier migration left plus 'email', read from the constraint itself, so this
-- migration adds 'email' without undoing another channel added before it.
DO $$
DECLARE
  def text;
BEGIN
  SELECT pg_get_constraintdef(oid) INTO STRICT def
    FROM pg_constraint
   WHERE conrelid = 'conversation_events'::regclass AND conname = 'conversation_events_channel_check';
  -- def reads: CHECK ((channel = ANY (ARRAY['telegram'::text, ..., 'api'::text])))
  IF position('''email''' IN def) = 0 THEN
    ALTER TABLE conversation_events DROP CONSTRAINT conversation_events_channel_check;
    EXECUTE 'ALTER TABLE conversation_events ADD CONSTRAINT conversation_events_channel_check '
         || replace(def, '::text])', '::text, ''email''::text])');
  END IF;
END $$;
