-- The change feed between processes sharing the file: every mutation of
-- keygate_keys adds one row per key it touches, in its own transaction.
-- Readers poll for rows after the last sequence number they saw; rows older
-- than a few minutes are pruned by the writers (a reader that fell further
-- behind distrusts its whole cache).
CREATE TABLE keygate_changes (
    seq    INTEGER PRIMARY KEY AUTOINCREMENT,
    key_id TEXT    NOT NULL,
    at     INTEGER NOT NULL -- Unix seconds, UTC
) STRICT;
