// Package sqlitestore is the SQLite backend of the control-plane
// [store.Store]: the whole state in one database file, opened with [Open].
// It is a pure-Go SQLite (modernc.org/sqlite), so no cgo is needed.
//
// Several processes may open the same file at once (the server, and the
// host admin CLI seeding or revoking users), so nothing is cached in the
// process: every call reads the database, and a change committed by one
// process is seen by the next call of every other.
//
// Connection settings (see dsn):
//   - WAL journal: readers never wait for the writer, nor it for them.
//   - synchronous=FULL: a change is on disk before its call returns, so
//     nothing acknowledged is lost on power failure. (NORMAL would only
//     lose the last commits, but those may already have been announced.)
//   - busy_timeout: a writer waits for another instead of failing.
//   - foreign_keys: every user and room reference is checked.
//   - _txlock=immediate: every read-write transaction starts with BEGIN
//     IMMEDIATE and so takes the write lock before it reads. Two
//     read-modify-write changes (two rekeys, say) therefore serialize: the
//     second waits, then reads what the first wrote, instead of failing
//     with SQLITE_BUSY when it tries to write. Read-only work runs outside
//     transactions and takes no write lock.
//
// Membership history (migrations/0002_history.sql): every room change runs
// the checks of its documented error codes first, then, still inside its
// transaction, [store.CheckStatement] against the room's head statement and its
// current member rows, and only then writes: its rows, its statement
// (verbatim) and the room's new head. A refused change therefore writes
// nothing.
//
// [Backup] makes a consistent copy of a database while it is in use.
package sqlitestore
