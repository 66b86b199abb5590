// Package store is the contract of the unibus control plane's state and
// the rules every backend keeps, with no backend in it: it imports no
// database driver, no NATS client and no net/http, so that the compiler
// keeps each backend and the HTTP API apart from the others.
//
// # The contract
//
// [Store] keeps the users, rooms, members, the sealed keys of every epoch
// and each room's signed membership history. [Add] and [Rekey] are its
// atomic membership changes; [Store.DeleteRoom] removes a room and all of
// it ([CheckDelete] says who may). [Snapshot] is a backend-agnostic dump of the
// whole state, read by a backend that is a [SnapshotExporter].
//
// # The rules
//
// A change is checked inside the backend's transaction, from what the
// backend read there, by the functions of this package: [CheckNewRoom],
// [CheckAdd], [CheckRekey], [CheckStatement] and the others, in the order
// every backend calls them (the order decides which error code a request
// breaking several rules gets). Their errors are *api.Error values with a
// code, and each says what to do next. The errors a backend returns of
// its own accord for the same situations ([UserNotFound], [RoomNotFound],
// …) are here too, so that both backends say the same thing.
//
// User names are unique regardless of case: [NameTaken] is the conflict
// of a name taken in any case, and [MatchName] picks the user a lookup by
// name means, the same way in both backends (names.go).
//
// The backends are packages sqlitestore and kvstore beside this one; the
// conformance suite both pass is package storetest.
package store
