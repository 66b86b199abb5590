package busauth

import (
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/subjects"
)

// JetStream API subjects a member's connection needs to read and write the
// history of its rooms, as nats.go v1.55's jetstream package sends them.
const (
	jsAPI = "$JS.API."
	// jsAccountInfo is answered with the account's JetStream usage.
	jsAccountInfo = jsAPI + "INFO"
	// jsConsumerCreate is followed by the consumer name and the filter
	// subject: nats.go uses this form when a consumer has exactly one
	// filter subject, and the server refuses a request whose configured
	// filter differs from the subject's.
	jsConsumerCreate = jsAPI + "CONSUMER.CREATE." + api.HistoryStream + ".*."
	jsConsumerNext   = jsAPI + "CONSUMER.MSG.NEXT." + api.HistoryStream + ".*"
	jsConsumerInfo   = jsAPI + "CONSUMER.INFO." + api.HistoryStream + ".*"
	jsConsumerDelete = jsAPI + "CONSUMER.DELETE." + api.HistoryStream + ".*"
	// jsDirectGetLast is followed by a subject: the last message stored on
	// it. The server refuses a body that asks for anything else.
	jsDirectGetLast = jsAPI + "DIRECT.GET." + api.HistoryStream + "."
)

// RoomPermissions returns the NATS permissions of a connection of the user
// userKey ("U…") that belongs to rooms. They allow exactly:
//
//   - publish and subscribe on each room's subjects, "unibus.room.<id>.>":
//     messages ("….msg", which the history stream stores; the JetStream
//     ack comes back on the inbox) and room events ("….event");
//   - publish and subscribe on the user's own inboxes,
//     [subjects.InboxPrefix](userKey)+".>"; every reply (JetStream acks,
//     API answers, consumer messages, heartbeats) arrives there;
//   - publish to "$JS.API.INFO" (account usage; no stream or room names);
//   - publish to "$JS.API.CONSUMER.CREATE.UNIBUS_HISTORY.*.unibus.room.<id>.msg"
//     for each room: create a consumer of the history stream whose one
//     filter subject is that room (the name token is free, the filter is
//     not; the server checks the request body's filter against it);
//   - publish to "$JS.API.DIRECT.GET.UNIBUS_HISTORY.unibus.room.<id>.msg"
//     for each room: the room's last message;
//   - publish to "$JS.API.CONSUMER.MSG.NEXT.UNIBUS_HISTORY.*",
//     "$JS.API.CONSUMER.INFO.UNIBUS_HISTORY.*" and
//     "$JS.API.CONSUMER.DELETE.UNIBUS_HISTORY.*": pull, inspect and
//     delete a consumer by name.
//
// That is all nats.go's ordered consumer needs: it creates a pull consumer
// with AckNone (no "$JS.ACK." publishes), pulls with idle heartbeats that
// arrive as status messages on the pull's inbox, uses no flow control (a
// push-consumer feature, "$JS.FC."), and deletes the old consumer when it
// resets.
//
// Everything else is refused: other rooms' subjects, wildcard
// subscriptions wider than a room ("unibus.room.>", ">"), other users'
// inboxes and the default "_INBOX.>", stream management and inspection
// ("$JS.API.STREAM.>": info with a subject list, message get, purge,
// delete), consumer listing, consumers with no filter or several filters,
// legacy consumer creation subjects, the direct get by sequence or in
// batches, acks, JetStream advisories ("$JS.EVENT.>") and the system
// account.
//
// # What the consumer-by-name grants let a non-member do
//
// Consumer names are chosen by the client and subject permissions match
// whole tokens only, so MSG.NEXT, INFO and DELETE cannot be tied to the
// consumers a user created: any admitted user may pull from, inspect or
// delete any consumer of the history stream whose name it knows. Knowing
// the name of a member's consumer on room B, a non-member of B can read
// B's history through it (ciphertext in an encrypted room, the envelopes
// in a cleartext one), learn its filter subject and position, delete it
// (the member's SDK recreates it), or, by a create request on a subject
// naming one of its own rooms, repoint it there. A non-member has no
// subject on which to learn the name: listing consumers, the JetStream API
// traffic, advisories and other users' inboxes are all refused.
//
// The name must therefore be unguessable, and nats.go's default is not:
// an ordered consumer is named after the process-wide nuid, whose prefix
// and constant step a member of any room the user shares can read in the
// reply subject of the user's JetStream publishes. In the tests, a member
// of room A finds the name of alice's ordered consumer on room B in under
// 20,000 no-wait pulls, a fraction of a second, and reads B. The SDK must
// name its consumers with [subjects.NewConsumerPrefix] (128 random bits),
// which makes the search hopeless; with it, reading another room through a
// consumer needs the name leaked by its owner.
//
// # What a member can still do within its rooms
//
// A consumer create request carries a full consumer configuration, which
// subject permissions cannot inspect. A member can therefore create a push
// consumer on its own room's history with a deliver subject of its choice:
// JetStream then republishes that room's stored messages to the subject,
// whatever the member's publish permissions say. That lets a member inject
// copies of its own room's messages (nothing it could not read anyway)
// into subjects it may not publish on. The SDK treats room events as hints
// and verifies every envelope it reads (room, epoch, sender signature), so
// such copies are rejected, but operators should know that the history
// grant is a publish capability beyond the listed subjects. Closing this
// and the name exposure above needs consumers that membershipd creates on
// the member's behalf (or JetStream in an account of its own, reached
// through exports), not subject permissions.
//
// A key that is not a valid user nkey gets permissions that refuse
// everything, and room ids not of the [api.NewRoomID] form are skipped, so
// no input can widen the grant with a wildcard or an extra subject token.
// The result is a fresh value each call.
func RoomPermissions(userKey string, rooms []string) *server.Permissions {
	if !nkeys.IsValidPublicUserKey(userKey) {
		return denyAll()
	}
	inbox := subjects.InboxPrefix(userKey) + ".>"
	pub := []string{inbox, jsAccountInfo, jsConsumerNext, jsConsumerInfo, jsConsumerDelete}
	sub := []string{inbox}
	seen := make(map[string]bool, len(rooms))
	for _, room := range rooms {
		if !api.ValidRoomID(room) || seen[room] {
			continue
		}
		seen[room] = true
		all := api.SubjectPrefix + room + ".>"
		msgs := api.RoomSubject(room)
		// Members publish messages only: room events come from
		// membershipd, which closes the connections of the users they
		// name.
		pub = append(pub, msgs, jsConsumerCreate+msgs, jsDirectGetLast+msgs)
		sub = append(sub, all)
	}
	return &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: pub},
		Subscribe: &server.SubjectPermission{Allow: sub},
	}
}

// denyAll returns permissions that refuse every publish and subscription.
func denyAll() *server.Permissions {
	return &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: []string{}, Deny: []string{">"}},
		Subscribe: &server.SubjectPermission{Allow: []string{}, Deny: []string{">"}},
	}
}
