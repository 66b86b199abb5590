-- Schema version 3: the nonces of signed requests that changed something,
-- kept until their signature's time window has passed, so that a captured
-- request cannot be replayed, not even across a restart.
CREATE TABLE request_nonces (
    nonce   TEXT    NOT NULL PRIMARY KEY,
    expires INTEGER NOT NULL
) WITHOUT ROWID;

CREATE INDEX request_nonces_expiry ON request_nonces (expires);
