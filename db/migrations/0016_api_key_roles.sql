-- API keys take every role of the permission table (pipeline/control/permissions.ts): `viewer`
-- reads, `approver` decides approvals, besides `client`, `operator`, `admin` and `mcp`. Keys
-- made before keep their roles and what the table grants them; an `operator` key no longer
-- decides approvals (that is `approver`, or `admin`).
ALTER TABLE api_keys DROP CONSTRAINT api_keys_roles_check;
ALTER TABLE api_keys ADD CONSTRAINT api_keys_roles_check CHECK (
  roles <@ ARRAY['client', 'viewer', 'operator', 'approver', 'admin', 'mcp']
  AND cardinality(roles) > 0
  AND (('mcp' = ANY (roles)) = (agent IS NOT NULL))
  AND (NOT ('mcp' = ANY (roles)) OR cardinality(roles) = 1));
