// Package subjects names the per-user NATS subjects and JetStream names that
// the server's permissions and the SDK must agree on, without importing
// either side: it depends on the standard library alone, so a client binary
// can use it without carrying nats-server.
//
// # Inboxes
//
// Each bus user receives request replies (JetStream acks, consumer
// messages, direct gets) on inboxes under its own prefix, [InboxPrefix].
// The server lets a connection subscribe only below its own prefix, so no
// user can listen on another's replies. The SDK passes the same prefix to
// nats.CustomInboxPrefix.
//
// # Consumer names
//
// membershipd names the history readers it makes for members (package
// readers on the server) with [NewConsumerPrefix]: 128 random bits, so
// that a name says nothing of its owner and cannot be guessed.
package subjects

import (
	"crypto/rand"
	"encoding/base32"
)

// inboxPrefixBase starts every per-user inbox prefix. It differs from the
// NATS default "_INBOX" in its first token, so a per-user inbox can never
// overlap the inboxes of a connection that keeps the default (membershipd's
// own connection, for example).
const inboxPrefixBase = "_INBOX_"

// InboxPrefix returns the inbox prefix of the user with the given public
// user nkey ("U…"), for example "_INBOX_UABC…". Inboxes are this prefix, a
// dot and a unique token; the server grants the user "<prefix>.>".
//
// userKey must be a valid public user nkey (base32, no dots, no wildcards):
// the result is then a single subject token. The function does not check
// it; the server refuses any other key before it asks for a prefix.
func InboxPrefix(userKey string) string { return inboxPrefixBase + userKey }

var consumerEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// NewConsumerPrefix returns a fresh name prefix for a consumer of the
// history stream: 26 characters of [a-z2-7] carrying 128 bits from
// crypto/rand, valid as a JetStream consumer name and as a subject token.
// It also serves as the random token of a reader's deliver subject.
func NewConsumerPrefix() string {
	var b [16]byte
	rand.Read(b[:])
	return consumerEncoding.EncodeToString(b[:])
}
