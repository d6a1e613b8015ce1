-- Facts about the database itself, such as the pepper check value (an
-- HMAC of a fixed label under the pepper, never the pepper).
CREATE TABLE keygate_meta (
    name  TEXT PRIMARY KEY,
    value BYTEA NOT NULL
);
