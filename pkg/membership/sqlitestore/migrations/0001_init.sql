-- Schema version 1 of the unibus control-plane store (SQLite backend).
--
-- Conventions:
--   * Times are INTEGER unix nanoseconds, UTC.
--   * Epochs are INTEGER and start at 1. A member row covers the epochs
--     [since, until); until is NULL while the user is a member.
--   * Users and rooms are never deleted: every reference below can be a
--     foreign key, and former members keep their rows for history.
--   * users and rooms are rowid tables so that "oldest first" can break
--     created_at ties by insertion order; the other tables are WITHOUT ROWID,
--     stored in primary key order.
--
-- Choices worth knowing before changing this file:
--   * sealed_keys is keyed (room, epoch, member), so a rekey appends one
--     contiguous run of rows for the new epoch and its cost grows with the
--     room, not with the room's history. Keyed (room, member, epoch), or
--     with an index in that order, every rekey would rewrite a page of
--     every member's key history: measured on a 10,000-member room, a
--     rekey went from ~70 ms to ~600 ms over 40 epochs. Reading one
--     member's keys of every epoch therefore looks up each epoch of the
--     member's [since, until) ranges (see SealedKeys in sqlite.go).
--   * blobs.uploader references users, like every other user column.
--   * users carry a CHECK that revoked_at is set exactly when the user is
--     revoked, and members a CHECK that until > since.

CREATE TABLE users (
    user_key   TEXT    NOT NULL PRIMARY KEY,
    name       TEXT    NOT NULL UNIQUE,
    xkey       TEXT    NOT NULL,
    binding    BLOB    NOT NULL,
    role       TEXT    NOT NULL CHECK (role IN ('admin', 'member')),
    status     TEXT    NOT NULL CHECK (status IN ('active', 'revoked')),
    created_at INTEGER NOT NULL,
    revoked_at INTEGER,
    CHECK ((status = 'revoked') = (revoked_at IS NOT NULL))
);

CREATE TABLE rooms (
    id         TEXT    NOT NULL PRIMARY KEY,
    name       TEXT    NOT NULL,
    encrypted  INTEGER NOT NULL CHECK (encrypted IN (0, 1)),
    epoch      INTEGER NOT NULL CHECK (epoch >= 1),
    creator    TEXT    NOT NULL REFERENCES users (user_key),
    created_at INTEGER NOT NULL
);

CREATE TABLE members (
    room     TEXT    NOT NULL REFERENCES rooms (id),
    user_key TEXT    NOT NULL REFERENCES users (user_key),
    since    INTEGER NOT NULL CHECK (since >= 1),
    until    INTEGER CHECK (until IS NULL OR until > since),
    PRIMARY KEY (room, user_key, since)
) WITHOUT ROWID;

-- At most one current membership per user and room; a removed member who
-- is added again gets a new row.
CREATE UNIQUE INDEX members_current ON members (room, user_key) WHERE until IS NULL;

-- RoomsOf: the rooms a user is a member of now.
CREATE INDEX members_of_user ON members (user_key, room) WHERE until IS NULL;

CREATE TABLE sealed_keys (
    room   TEXT    NOT NULL REFERENCES rooms (id),
    epoch  INTEGER NOT NULL CHECK (epoch >= 1),
    member TEXT    NOT NULL REFERENCES users (user_key),
    sealer TEXT    NOT NULL REFERENCES users (user_key),
    sealed BLOB    NOT NULL,
    PRIMARY KEY (room, epoch, member)
) WITHOUT ROWID;

CREATE TABLE blobs (
    room       TEXT    NOT NULL REFERENCES rooms (id),
    id         TEXT    NOT NULL,
    size       INTEGER NOT NULL CHECK (size >= 0),
    uploader   TEXT    NOT NULL REFERENCES users (user_key),
    created_at INTEGER NOT NULL,
    PRIMARY KEY (room, id)
) WITHOUT ROWID;
