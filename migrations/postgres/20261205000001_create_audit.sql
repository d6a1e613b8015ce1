-- The audit log: one row per change of a key, written in the change's own
-- transaction. No foreign key to keygate_keys: a deleted key keeps its
-- records. Never a token, a MAC or a secret: `changes` is the difference
-- between two key records, which hold none.
CREATE TABLE keygate_audit (
    id            TEXT COLLATE "C" PRIMARY KEY, -- UUID v7 (byte-wise order, as in every backend)
    at            BIGINT NOT NULL,             -- Unix seconds, UTC
    actor         JSONB  NOT NULL,
    action        TEXT   NOT NULL,             -- key.create, key.update, ...
    target_key_id TEXT   NOT NULL,
    target_owner  TEXT   NOT NULL,
    changes       JSONB  NOT NULL,             -- field -> {from, to}
    client_ip     TEXT,
    request_id    TEXT
);

CREATE INDEX keygate_audit_order ON keygate_audit (at, id);
CREATE INDEX keygate_audit_owner_order ON keygate_audit (target_owner, at, id);
CREATE INDEX keygate_audit_key_order ON keygate_audit (target_key_id, at, id);
