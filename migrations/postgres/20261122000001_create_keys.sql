-- keygate key records. The token itself is never stored: only its
-- HMAC-SHA256 under a pepper that lives outside the database.
--
-- Key ids are compared byte-wise (COLLATE "C") so that the listing order
-- (created_at, id) is the same as in every other backend, whatever the
-- database's default collation.
CREATE TABLE keygate_keys (
    id             TEXT COLLATE "C" PRIMARY KEY,
    mac            BYTEA   NOT NULL,
    display_prefix TEXT    NOT NULL,
    name           TEXT    NOT NULL,
    description    TEXT,
    owner          TEXT    NOT NULL,
    organization   TEXT,
    environment    TEXT    NOT NULL,
    scopes         JSONB   NOT NULL, -- array of strings
    ip_allow       JSONB   NOT NULL, -- array of CIDR strings
    ip_deny        JSONB   NOT NULL, -- array of CIDR strings
    metadata       JSONB   NOT NULL, -- object
    created_at     BIGINT  NOT NULL, -- Unix seconds, UTC
    updated_at     BIGINT  NOT NULL,
    expires_at     BIGINT,
    last_used_at   BIGINT,
    last_used_ip   TEXT,
    revoked_at     BIGINT,
    revoked_reason TEXT,
    superseded_by  TEXT COLLATE "C",
    revision       BIGINT  NOT NULL DEFAULT 0
);

CREATE INDEX keygate_keys_owner_order ON keygate_keys (owner, created_at, id);
CREATE INDEX keygate_keys_organization_order ON keygate_keys (organization, created_at, id);
CREATE INDEX keygate_keys_order ON keygate_keys (created_at, id);
