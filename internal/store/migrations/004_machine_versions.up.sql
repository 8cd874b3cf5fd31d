-- Every machine version a stack has run on, by the SHA-256 of the file's bytes, so a stack keeps
-- working on the last valid version it ran on when its file is broken or deleted, or no longer
-- has the stack's state, even in a process that never saw that version (a cold Lambda).
-- Rows are written in the transaction that first pins a stack to the version.
CREATE TABLE machine_versions (
    hash      text        PRIMARY KEY,
    name      text        NOT NULL,
    body      bytea       NOT NULL,
    stored_at timestamptz NOT NULL
);
ALTER TABLE stacks ADD COLUMN machine_hash text NOT NULL DEFAULT '';
