// Package kvstore is the JetStream KV backend of the control-plane
// [store.Store], opened with [Open]. It keeps the control plane in five KV
// buckets, so that several membershipd nodes share one state and no
// state lives in one process or on one disk. docs/kv-store.md explains
// the choices below at more length.
//
// Buckets (P is Config.Prefix, "unibus" by default) and keys:
//
//	P_users     u.<user key>          the user (JSON: identity, role, status, times)
//	            n.<folded name>       the user key holding that name in any case
//	                                  (uniqueness; identity.FoldName)
//	P_rooms     <room id>             the room document: the commit point of
//	                                  every membership change
//	P_roomdata  t.<room>.<change>     a change's statement (body and signature)
//	            k.<room>.<change>.<member>   a sealed key written by a change
//	            s.<room>.<change>     the room state after a change, when too
//	                                  large to sit in the room document
//	P_blobs     <room>.<blob id>      which room a blob belongs to
//	P_nonces    <nonce>               a used request nonce and its expiry
//
// Tokens that may hold characters a KV key cannot (names, blob ids,
// nonces) are escaped by kvToken. A value larger than one NATS message is
// stored in parts: <key>, <key>.1, <key>.2… (see putLarge).
//
// # Atomic changes
//
// A room change (creation, add, rekey, removal) is made under a fresh
// change id. Its bulk data, the statement and every sealed key, and the
// new room state if large, are written first, under keys holding the
// change id, pipelined with asynchronous publishes. Then the room
// document is written with a revision-checked update (a create for a new
// room): the commit point. The document names the room's epoch and head
// and holds (or points to) the room state: every membership span and the
// change id holding each statement and each epoch's keys. Readers follow
// only what a document commits, so a change is seen whole or not at all:
// a writer that crashes before its commit, or loses the race for it to a
// concurrent writer, leaves only data no document names. The loser of a
// race gets conflict and purges its own data; a crash leaves it for
// Sweep.
//
// Deleting a room purges its document, checked against the revision the
// deletion read (a change committed meanwhile makes it conflict): the
// commit point, after which the room is gone for every reader and every
// node's cache. Its data (t., k., s. keys) and blob records are purged
// after it; the data a failure there leaves is named by no document, and
// Sweep collects it.
//
// Creating a user writes two keys, the user and its name, in one atomic
// batch publish (nats-server 2.12 and later), each with an expected last
// subject sequence of 0, so that the key and the name are both unique and
// a crash cannot leave one without the other. The name key is the name
// case-folded, so that "Dave" and "dave" are one key. Buckets written
// before names were folded hold n.<name> in the case registered, and may
// hold names differing only in case: they are left as they are (a name is
// signed into its identity and cannot be changed), the cache indexes
// every user by its folded name from the open on, CreateUser refuses a
// name the cache knows in any case, and lookups by name pick with
// store.MatchName (the exact name first).
//
// # Reads
//
// Every bucket is created with direct gets off, so that every read is
// answered by the stream leader: reads that feed a change are never from
// a replica that is behind. Each change re-reads the room document and
// commits only if its revision has not moved.
//
// The hot reads (IsAuthorized, GetUser, GetRoom, IsMember, RoomsOf) are
// served from an in-memory cache of the users and rooms buckets kept
// current by KV watches (kvcache.go): derived state, rebuilt from the
// buckets at open, that sees a change written by any node within
// milliseconds. A change made through this store updates its cache
// before returning. Checks made inside a change (is this user active?)
// first bring the cache up to the bucket's last sequence, read from the
// leader.
//
// # Durability
//
// The buckets use file storage with Config.Replicas copies. JetStream
// acknowledges a write before it is synced to disk unless the server runs
// with sync_interval: always (server.Options.SyncAlways), a server-wide
// setting that no stream or client can ask for: without it, writes
// acknowledged in the last sync interval (2 minutes by default) are lost
// when every replica crashes together. The embedded server must set it.
//
// # Migration
//
// [Import] writes a [store.Snapshot] (read from another backend) into the
// buckets with raw overwrites, so that running it again converges.
package kvstore
