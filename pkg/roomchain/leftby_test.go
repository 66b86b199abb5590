package roomchain_test

import (
	"testing"

	"github.com/enmanuel/unibus/pkg/identity"
	"github.com/enmanuel/unibus/pkg/roomchain"
)

// TestLeftByNamesTheMemberThatLeft: a member's removal of itself makes it
// the maker of the new epoch's key (State.LeftBy), as long as the epoch
// lasts: a plain add keeps it, the next rekey or removal by another clears
// it. A removal by an admin, of others, names nobody.
func TestLeftByNamesTheMemberThatLeft(t *testing.T) {
	alice, bob, carol, dave := user(t, "alice"), user(t, "bob"), user(t, "carol"), user(t, "dave")
	b := newChain(t, alice)
	b.append(alice, add(member(bob, roomchain.RoleMember), member(carol, roomchain.RoleMember)))
	for _, c := range []struct {
		what  string
		actor *identity.Identity
		st    roomchain.Statement
		want  string
	}{
		{"bob leaves", bob, roomchain.Statement{Kind: roomchain.KindRemove, Epoch: 2, Remove: keys(bob)}, bob.UserKey()},
		{"alice adds dave at that epoch", alice, roomchain.Statement{Kind: roomchain.KindAdd, Epoch: 2, Add: []roomchain.Member{member(dave, roomchain.RoleMember)}}, bob.UserKey()},
		{"carol rekeys", carol, roomchain.Statement{Kind: roomchain.KindRekey, Epoch: 3}, ""},
		{"alice removes dave", alice, roomchain.Statement{Kind: roomchain.KindRemove, Epoch: 4, Remove: keys(dave)}, ""},
		{"alice, the admin, leaves", alice, roomchain.Statement{Kind: roomchain.KindRemove, Epoch: 5, Remove: keys(alice)}, alice.UserKey()},
	} {
		b.append(c.actor, c.st)
		if b.state.LeftBy != c.want {
			t.Errorf("after %s: LeftBy = %q; want %q", c.what, b.state.LeftBy, c.want)
		}
	}
	if st, err := roomchain.Verify(room, b.chain); err != nil {
		t.Error(err)
	} else if st.LeftBy != alice.UserKey() {
		t.Errorf("the whole chain verified: LeftBy %q; want alice's key", st.LeftBy)
	}
	// A state restored from what a client pins keeps it.
	if restored := roomchain.Restore(*b.state, b.state.Spans()); restored.LeftBy != alice.UserKey() {
		t.Errorf("restored LeftBy = %q; want alice's key", restored.LeftBy)
	}
}
