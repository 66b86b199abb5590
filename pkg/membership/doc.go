// Package membership is the unibus control plane: who may use the bus,
// which rooms exist, who belongs to each room at each epoch, the room keys
// sealed to each member, and each room's signed membership history. The
// server never holds a room key in the clear, and cannot write a
// membership statement: it checks them ([CheckStatement]) and stores them.
//
// # Store
//
// [Store] keeps that state; [Add] and [Rekey] are its atomic membership
// changes, with the rules they check. Two backends implement it and pass
// the conformance suite in package storetest, which is written against the
// interface alone:
//
//   - [Open]: SQLite, one database file, which the server and the host
//     admin CLI (`membershipd user`) may open at the same time, each seeing
//     the other's changes at once.
//   - [OpenKV]: replicated JetStream KV buckets on the bus itself, so that
//     several membershipd nodes share one state (docs/kv-store.md).
//
// [Snapshot] is a backend-agnostic dump of the whole state;
// [MigrateSQLiteToKV] moves a SQLite store into the KV buckets, refusing
// ([KVAheadError]) to write over buckets that have moved on past it, and
// [BackupSQLite] copies the database first.
//
// # Server
//
// [Server] is the HTTP API over a Store; docs/api.md documents its routes.
// It keeps no state of its own. [AuthMode] sets how strictly it checks
// request signatures: off, soft or enforce. Under enforce the embedded NATS
// server, too, admits only active users, and [RateLimiter] slows a client
// that floods the API.
package membership
