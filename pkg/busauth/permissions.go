package busauth

import (
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/subjects"
)

// jsFlowControl is the one JetStream subject a member's connection may
// publish on. It answers the flow-control requests of the history readers
// membershipd makes (package readers): "$JS.FC.<stream>.<consumer>.
// <random>". The server acts only on the answer to the latest request of
// a consumer, whose last token is random, and answers nothing back, so no
// reply subject a member sets on it is ever published to.
const jsFlowControl = "$JS.FC." + api.HistoryStream + ".*.*"

// RoomPermissions returns the NATS permissions of a connection of the user
// userKey ("U…") that belongs to rooms. They allow exactly:
//
//   - publish on each room's message subject, "unibus.room.<id>.msg",
//     which the history stream stores (the JetStream ack comes back on
//     the inbox); subscribe to each room's event subject,
//     "unibus.room.<id>.event", on which membershipd announces changes;
//   - publish and subscribe on the user's own inboxes,
//     [subjects.InboxPrefix](userKey)+".>": every reply (JetStream acks,
//     request answers), the user's key deliveries, and the history readers
//     membershipd opens for the user arrive there;
//   - publish to "$JS.FC.UNIBUS_HISTORY.*.*": answers to the flow-control
//     requests of those readers.
//
// Nothing of the JetStream API: a request's reply subject is not checked
// against any permission, and JetStream answers it with the account's
// rights, so every API request a member could send would let it make
// JetStream publish where the member may not. No consumer can be
// created, named, pulled from, inspected or deleted by a member, no
// deliver subject chosen, no stream read or message fetched. A member reads its rooms only through
// readers that membershipd creates for it after checking its membership
// at that moment, delivering to the member's own inbox, and deletes when
// it is removed or revoked (package readers; docs/security.md). Nor may a
// member subscribe to a room's message subject: live messages too come
// through its reader, so that removal closes them with the reader.
//
// Everything else is refused: other rooms' subjects, room events (only
// membershipd publishes them, and it closes the connections of the users
// they name), wildcard subscriptions wider than a room ("unibus.room.>",
// ">"), other users' inboxes and the default "_INBOX.>", the whole
// JetStream API (account info included), acks, advisories ("$JS.EVENT.>")
// and the system account.
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
	pub := []string{inbox, jsFlowControl}
	sub := []string{inbox}
	seen := make(map[string]bool, len(rooms))
	for _, room := range rooms {
		if !api.ValidRoomID(room) || seen[room] {
			continue
		}
		seen[room] = true
		pub = append(pub, api.RoomSubject(room))
		sub = append(sub, api.RoomEventSubject(room))
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
