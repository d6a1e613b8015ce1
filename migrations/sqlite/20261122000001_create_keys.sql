-- keygate key records. The token itself is never stored: only its
-- HMAC-SHA256 under a pepper that lives outside the database.
CREATE TABLE keygate_keys (
    id             TEXT    PRIMARY KEY NOT NULL,
    mac            BLOB    NOT NULL,
    display_prefix TEXT    NOT NULL,
    name           TEXT    NOT NULL,
    description    TEXT,
    owner          TEXT    NOT NULL,
    organization   TEXT,
    environment    TEXT    NOT NULL,
    scopes         TEXT    NOT NULL, -- JSON array of strings
    ip_allow       TEXT    NOT NULL, -- JSON array of CIDR strings
    ip_deny        TEXT    NOT NULL, -- JSON array of CIDR strings
    metadata       TEXT    NOT NULL, -- JSON object
    created_at     INTEGER NOT NULL, -- Unix seconds, UTC
    updated_at     INTEGER NOT NULL,
    expires_at     INTEGER,
    last_used_at   INTEGER,
    last_used_ip   TEXT,
    revoked_at     INTEGER,
    revoked_reason TEXT,
    superseded_by  TEXT,
    revision       INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE INDEX keygate_keys_owner_order ON keygate_keys (owner, created_at, id);
CREATE INDEX keygate_keys_organization_order ON keygate_keys (organization, created_at, id);
CREATE INDEX keygate_keys_order ON keygate_keys (created_at, id);
