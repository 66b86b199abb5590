-- Schema version 2: the signed membership history of every room
-- (pkg/roomchain): one statement per membership change, stored verbatim.
--
-- Rooms created before version 2 have no history: head_seq 0, no
-- statements. Clients refuse to use them, and the store refuses to change
-- them (no statement can follow a missing head). They were never released,
-- so nothing converts them.
--
--   * statements holds each statement exactly as its actor signed it: body
--     (the canonical JSON encoding) and sig. hash is the lowercase hex
--     SHA-256 of body, the Prev the next statement must name. Keyed
--     (room, seq), so a change appends and Statements(after) is one range.
--     A statement lists the room's whole member set: about 250 bytes per
--     member, 2.5 MB for 10,000 members, kept as one BLOB (overflow pages).
--   * rooms.head_seq and rooms.head_hash name the room's last statement
--     (0 and '' for none), so that GetRoom and RoomsOf need no second
--     lookup; every change updates them in the transaction that appends
--     the statement.

CREATE TABLE statements (
    room TEXT    NOT NULL REFERENCES rooms (id),
    seq  INTEGER NOT NULL CHECK (seq >= 1),
    hash TEXT    NOT NULL CHECK (length(hash) = 64),
    body BLOB    NOT NULL,
    sig  BLOB    NOT NULL,
    PRIMARY KEY (room, seq)
) WITHOUT ROWID;

ALTER TABLE rooms ADD COLUMN head_seq INTEGER NOT NULL DEFAULT 0 CHECK (head_seq >= 0);
ALTER TABLE rooms ADD COLUMN head_hash TEXT NOT NULL DEFAULT '';
