-- A key's rate limits (SPEC §11): a JSON array of
-- {"name", "limit", "period", "shared"?} objects; '[]' when it has none.
ALTER TABLE keygate_keys ADD COLUMN rate_limits TEXT NOT NULL DEFAULT '[]';
