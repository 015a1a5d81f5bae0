-- An API key's stored prefix was cut after the key's last '_', and base64url has '_' in it:
-- about half the prefixes kept more than 4 random characters and some the whole key. A prefix
-- is now 'awk_<project>_' and the first 4 random characters, nothing more; the ones already
-- stored are cut to that (every old prefix began with 'awk_<project>_' and was at least that
-- long), and a check keeps it so.

-- The owner running migrations obeys row-level security (FORCE) and no policy is its own:
-- lifted for this transaction only, so the UPDATE sees every project's keys.
ALTER TABLE api_keys NO FORCE ROW LEVEL SECURITY;
UPDATE api_keys SET key_prefix = left(key_prefix, length(project_id) + 9)
 WHERE length(key_prefix) > length(project_id) + 9;
ALTER TABLE api_keys FORCE ROW LEVEL SECURITY;

ALTER TABLE api_keys ADD CONSTRAINT api_keys_key_prefix_short CHECK (
  length(key_prefix) = length(project_id) + 9
  AND left(key_prefix, length(project_id) + 5) = 'awk_' || project_id || '_');
