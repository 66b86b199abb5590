// Package membership is the unibus control plane: who may use the bus,
// which rooms exist, who belongs to each room at each epoch, and the room
// keys sealed to each member. The server never holds a room key in the
// clear.
//
// # Store
//
// [Store] keeps that state; [Rekey] is its one epoch change, with the rules
// it checks. [Open] returns the SQLite backend: one database file, which the
// server and the host admin CLI (`membershipd user`) may open at the same
// time, each seeing the other's changes at once. Every backend (a JetStream
// KV one is planned) must pass the conformance suite in package storetest,
// which is written against the interface alone.
//
// # Server
//
// [Server] is the HTTP API over a Store; docs/api.md documents its routes.
// It keeps no state of its own. [AuthMode] sets how strictly it checks
// request signatures: off, soft or enforce. Under enforce the embedded NATS
// server, too, admits only active users, asking Store.IsAuthorized on every
// connect.
package membership
