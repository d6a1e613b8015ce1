-- The audit log: one row per change of a key, written in the change's own
-- transaction. No foreign key to keygate_keys: a deleted key keeps its
-- records. Never a token, a MAC or a secret: `changes` is the difference
-- between two key records, which hold none.
CREATE TABLE keygate_audit (
    id            TEXT    PRIMARY KEY NOT NULL, -- UUID v7
    at            INTEGER NOT NULL,             -- Unix seconds, UTC
    actor         TEXT    NOT NULL,             -- JSON object
    action        TEXT    NOT NULL,             -- key.create, key.update, ...
    target_key_id TEXT    NOT NULL,
    target_owner  TEXT    NOT NULL,
    changes       TEXT    NOT NULL,             -- JSON object: field -> {from, to}
    client_ip     TEXT,
    request_id    TEXT
) STRICT;

CREATE INDEX keygate_audit_order ON keygate_audit (at, id);
CREATE INDEX keygate_audit_owner_order ON keygate_audit (target_owner, at, id);
CREATE INDEX keygate_audit_key_order ON keygate_audit (target_key_id, at, id);
