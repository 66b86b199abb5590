package roomchain_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/enmanuel/unibus/pkg/identity"
	"github.com/enmanuel/unibus/pkg/roomchain"
)

const room = "aaaaaaaaaaaaaaaaaaaaaaaaaa"

func seeded(seed string) *bytes.Reader {
	var out []byte
	block := sha256.Sum256([]byte(seed))
	for len(out) < 256 {
		out = append(out, block[:]...)
		block = sha256.Sum256(block[:])
	}
	return bytes.NewReader(out)
}

func user(tb testing.TB, name string) *identity.Identity {
	tb.Helper()
	id, err := identity.Generate(name, seeded(name))
	if err != nil {
		tb.Fatal(err)
	}
	return id
}

func member(id *identity.Identity, role string) roomchain.Member {
	return roomchain.Member{Public: id.Public(), Role: role}
}

// builder appends statements to a chain the way an honest client does.
type builder struct {
	tb    testing.TB
	chain []roomchain.Signed
	state *roomchain.State
}

func newChain(tb testing.TB, creator *identity.Identity) *builder {
	b := &builder{tb: tb}
	b.append(creator, roomchain.Statement{Kind: roomchain.KindCreate, Epoch: 1, Name: "ops", Encrypted: true, Members: []roomchain.Member{member(creator, roomchain.RoleAdmin)}})
	return b
}

func (b *builder) next(actor *identity.Identity, st roomchain.Statement) roomchain.Signed {
	b.tb.Helper()
	st.Version, st.Room, st.Actor, st.Time = roomchain.Version, room, actor.UserKey(), int64(len(b.chain))
	if b.state != nil {
		st.Seq, st.Prev = b.state.Seq+1, b.state.Head
	} else {
		st.Seq = 1
	}
	s, err := roomchain.Sign(st, actor.SigningKey())
	if err != nil {
		b.tb.Fatal(err)
	}
	return s
}

func (b *builder) append(actor *identity.Identity, st roomchain.Statement) {
	b.tb.Helper()
	s := b.next(actor, st)
	next, err := b.state.Apply(room, s)
	if err != nil {
		b.tb.Fatalf("honest statement refused: %v", err)
	}
	b.chain, b.state = append(b.chain, s), next
}

func (b *builder) members() []roomchain.Member { return slices.Clone(b.state.Members) }

func without(ms []roomchain.Member, ids ...*identity.Identity) []roomchain.Member {
	return slices.DeleteFunc(slices.Clone(ms), func(m roomchain.Member) bool {
		for _, id := range ids {
			if m.User == id.UserKey() {
				return true
			}
		}
		return false
	})
}

func TestHonestHistoryVerifies(t *testing.T) {
	alice, bob, carol := user(t, "alice"), user(t, "bob"), user(t, "carol")
	b := newChain(t, alice)
	b.append(alice, roomchain.Statement{Kind: roomchain.KindAdd, Epoch: 1, Members: append(b.members(), member(bob, roomchain.RoleMember))})
	b.append(bob, roomchain.Statement{Kind: roomchain.KindRekey, Epoch: 2, Members: b.members()})
	b.append(alice, roomchain.Statement{Kind: roomchain.KindAdd, Epoch: 2, Members: append(b.members(), member(carol, roomchain.RoleMember))})
	b.append(alice, roomchain.Statement{Kind: roomchain.KindRemove, Epoch: 3, Members: without(b.members(), bob)})
	b.append(carol, roomchain.Statement{Kind: roomchain.KindRemove, Epoch: 4, Members: without(b.members(), carol)}) // carol leaves

	st, err := roomchain.Verify(room, b.chain)
	if err != nil {
		t.Fatal(err)
	}
	if st.Epoch != 4 || st.Seq != 6 || len(st.Members) != 1 || st.Members[0].User != alice.UserKey() {
		t.Fatalf("state = epoch %d seq %d members %v", st.Epoch, st.Seq, roomchain.Users(st.Members))
	}
	cases := []struct {
		who   *identity.Identity
		epoch uint64
		want  bool
	}{
		{alice, 1, true}, {alice, 4, true}, {bob, 1, true}, {bob, 2, true}, {bob, 3, false},
		{carol, 1, false}, {carol, 2, true}, {carol, 3, true}, {carol, 4, false},
	}
	for _, c := range cases {
		if _, got := st.MemberAt(c.who.UserKey(), c.epoch); got != c.want {
			t.Errorf("MemberAt(%s, %d) = %v; want %v", c.who.Name(), c.epoch, got, c.want)
		}
	}
	// Verifying incrementally from a saved state gives the same result.
	mid, _ := roomchain.Verify(room, b.chain[:3])
	restored := roomchain.Restore(*mid, mid.Spans())
	for _, s := range b.chain[3:] {
		if restored, err = restored.Apply(room, s); err != nil {
			t.Fatal(err)
		}
	}
	if restored.Head != st.Head || fmt.Sprint(restored.Spans()) != fmt.Sprint(st.Spans()) {
		t.Fatal("incremental verification from a restored state differs")
	}
}

func TestForgedHistoriesAreRefused(t *testing.T) {
	alice, bob, mallory := user(t, "alice"), user(t, "bob"), user(t, "mallory")
	b := newChain(t, alice)
	b.append(alice, roomchain.Statement{Kind: roomchain.KindAdd, Epoch: 1, Members: append(b.members(), member(bob, roomchain.RoleMember))})
	base := slices.Clone(b.chain)
	swapped := member(bob, roomchain.RoleMember)
	swapped.XKey = mallory.Public().XKey
	cases := []struct {
		name  string
		chain func() []roomchain.Signed
		want  string
	}{
		{"ghost member added by the server", func() []roomchain.Signed {
			return append(slices.Clone(base), b.next(mallory, roomchain.Statement{Kind: roomchain.KindAdd, Epoch: 1, Members: append(b.members(), member(mallory, roomchain.RoleMember))}))
		}, "not a member"},
		{"added by a non-admin", func() []roomchain.Signed {
			return append(slices.Clone(base), b.next(bob, roomchain.Statement{Kind: roomchain.KindAdd, Epoch: 1, Members: append(b.members(), member(mallory, roomchain.RoleMember))}))
		}, "not a room admin"},
		{"removal of another by a non-admin", func() []roomchain.Signed {
			return append(slices.Clone(base), b.next(bob, roomchain.Statement{Kind: roomchain.KindRemove, Epoch: 2, Members: without(b.members(), alice)}))
		}, "not a room admin"},
		{"epoch rolled back", func() []roomchain.Signed {
			return append(slices.Clone(base), b.next(alice, roomchain.Statement{Kind: roomchain.KindRekey, Epoch: 1, Members: b.members()}))
		}, "next epoch"},
		{"removal without a new epoch", func() []roomchain.Signed {
			return append(slices.Clone(base), b.next(alice, roomchain.Statement{Kind: roomchain.KindRemove, Epoch: 1, Members: without(b.members(), bob)}))
		}, "next epoch"},
		{"member's xkey swapped", func() []roomchain.Signed {
			return append(slices.Clone(base), b.next(alice, roomchain.Statement{Kind: roomchain.KindRekey, Epoch: 2, Members: []roomchain.Member{member(alice, roomchain.RoleAdmin), swapped}}))
		}, "changes the record"},
		{"statement dropped", func() []roomchain.Signed {
			return []roomchain.Signed{base[0], b.next(alice, roomchain.Statement{Kind: roomchain.KindRekey, Epoch: 2, Members: b.members()})}
		}, "out of order"},
		{"statements reordered", func() []roomchain.Signed { return []roomchain.Signed{base[1], base[0]} }, "out of order"},
		{"signature altered", func() []roomchain.Signed {
			c := slices.Clone(base)
			c[1].Sig = slices.Clone(c[1].Sig)
			c[1].Sig[5] ^= 1
			return c
		}, "signature"},
		{"body altered", func() []roomchain.Signed {
			c := slices.Clone(base)
			c[1].Body = bytes.Replace(slices.Clone(c[1].Body), []byte(`"role":"member"`), []byte(`"role":"admin"`), 1)
			return c
		}, "signature"},
		{"not canonical", func() []roomchain.Signed {
			c := slices.Clone(base)
			c[1].Body = append([]byte(" "), c[1].Body...)
			return c
		}, "canonical"},
		{"unknown field", func() []roomchain.Signed {
			c := slices.Clone(base)
			c[1].Body = bytes.Replace(slices.Clone(c[1].Body), []byte(`{"v":1`), []byte(`{"x":1,"v":1`), 1)
			return c
		}, "malformed"},
		{"no creation", func() []roomchain.Signed { return base[1:] }, "out of order"},
		{"history of another room", func() []roomchain.Signed { return base }, "room"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := room
			if tc.name == "history of another room" {
				r = "bbbbbbbbbbbbbbbbbbbbbbbbbb"
			}
			_, err := roomchain.Verify(r, tc.chain())
			if !errors.Is(err, roomchain.ErrInvalid) {
				t.Fatalf("Verify = %v; want ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Verify = %q; want it to mention %q", err, tc.want)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	alice := user(f, "alice")
	b := newChain(f, alice)
	f.Add(b.chain[0].Body)
	f.Add([]byte(`{"v":1}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		st, err := roomchain.Parse(roomchain.Signed{Body: body})
		if err != nil {
			if !errors.Is(err, roomchain.ErrInvalid) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		again, err := roomchain.Sign(st, alice.SigningKey())
		if err != nil {
			t.Fatal(err)
		}
		if !slices.IsSortedFunc(st.Members, func(a, b roomchain.Member) int { return strings.Compare(a.User, b.User) }) {
			return // Sign sorts; only sorted lists round-trip.
		}
		if !bytes.Equal(again.Body, body) {
			t.Fatalf("Parse then Sign changed the body:\n%s\n%s", body, again.Body)
		}
	})
}

// BenchmarkVerify10000 verifies a history of 10,000 statements (rekeys of
// a 3-member room): the cost a client pays the first time it sees a long
// history.
func BenchmarkVerify10000(b *testing.B) {
	alice, bob, carol := user(b, "alice"), user(b, "bob"), user(b, "carol")
	c := newChain(b, alice)
	c.append(alice, roomchain.Statement{Kind: roomchain.KindAdd, Epoch: 1, Members: append(c.members(), member(bob, roomchain.RoleMember))})
	c.append(alice, roomchain.Statement{Kind: roomchain.KindAdd, Epoch: 1, Members: append(c.members(), member(carol, roomchain.RoleMember))})
	for len(c.chain) < 10000 {
		c.append(bob, roomchain.Statement{Kind: roomchain.KindRekey, Epoch: c.state.Epoch + 1, Members: c.members()})
	}
	b.ResetTimer()
	for range b.N {
		if _, err := roomchain.Verify(room, c.chain); err != nil {
			b.Fatal(err)
		}
	}
}
