package roomchain_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
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

func keys(ids ...*identity.Identity) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = id.UserKey()
	}
	return out
}

// builder appends statements to a chain the way an honest client does.
type builder struct {
	tb    testing.TB
	chain []roomchain.Signed
	state *roomchain.State
}

func newChain(tb testing.TB, creator *identity.Identity) *builder {
	b := &builder{tb: tb}
	b.append(creator, roomchain.Statement{Kind: roomchain.KindCreate, Epoch: 1, Name: "ops", Encrypted: true, Add: []roomchain.Member{member(creator, roomchain.RoleAdmin)}})
	return b
}

// next signs st as the statement after the builder's head. Admins left
// nil are filled in as an honest client does: the current admins, plus
// those added as admins, minus those removed.
func (b *builder) next(actor *identity.Identity, st roomchain.Statement) roomchain.Signed {
	b.tb.Helper()
	st.Version, st.Room, st.Actor, st.Time = roomchain.Version, room, actor.UserKey(), int64(len(b.chain))
	if b.state != nil {
		st.Seq, st.Prev = b.state.Seq+1, b.state.Head
	} else {
		st.Seq = 1
	}
	if st.Admins == nil {
		st.Admins = b.state.AdminsAfter(st.Add, st.Remove)
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

func add(ms ...roomchain.Member) roomchain.Statement {
	return roomchain.Statement{Kind: roomchain.KindAdd, Epoch: 1, Add: ms}
}

func TestHonestHistoryVerifies(t *testing.T) {
	alice, bob, carol, dave := user(t, "alice"), user(t, "bob"), user(t, "carol"), user(t, "dave")
	b := newChain(t, alice)
	b.append(alice, roomchain.Statement{Kind: roomchain.KindAdd, Epoch: 1, Add: []roomchain.Member{member(bob, roomchain.RoleMember)}})
	b.append(bob, roomchain.Statement{Kind: roomchain.KindRekey, Epoch: 2})
	b.append(alice, roomchain.Statement{Kind: roomchain.KindAdd, Epoch: 2, Add: []roomchain.Member{member(carol, roomchain.RoleMember), member(dave, roomchain.RoleAdmin)}})
	b.append(alice, roomchain.Statement{Kind: roomchain.KindRemove, Epoch: 3, Remove: keys(bob)})
	b.append(carol, roomchain.Statement{Kind: roomchain.KindRemove, Epoch: 4, Remove: keys(carol)}) // carol leaves
	b.append(alice, roomchain.Statement{Kind: roomchain.KindRemove, Epoch: 5, Remove: keys(alice)}) // alice leaves: dave is still an admin

	st, err := roomchain.Verify(room, b.chain)
	if err != nil {
		t.Fatal(err)
	}
	if st.Epoch != 5 || st.Seq != 7 || !slices.Equal(roomchain.Users(st.Members), keys(dave)) || !slices.Equal(st.Admins, keys(dave)) {
		t.Fatalf("state = epoch %d seq %d members %v admins %v", st.Epoch, st.Seq, roomchain.Users(st.Members), st.Admins)
	}
	if m, _ := st.Member(dave.UserKey()); m.Role != roomchain.RoleAdmin || m.XKey != dave.Public().XKey {
		t.Fatalf("Member(dave) = %+v; want his record, as admin", m)
	}
	cases := []struct {
		who   *identity.Identity
		epoch uint64
		want  bool
	}{
		{alice, 1, true}, {alice, 4, true}, {alice, 5, false}, {bob, 1, true}, {bob, 2, true}, {bob, 3, false},
		{carol, 1, false}, {carol, 2, true}, {carol, 3, true}, {carol, 4, false}, {dave, 2, true}, {dave, 5, true},
	}
	for _, c := range cases {
		if _, got := st.MemberAt(c.who.UserKey(), c.epoch); got != c.want {
			t.Errorf("MemberAt(%s, %d) = %v; want %v", c.who.Name(), c.epoch, got, c.want)
		}
	}
	// Verifying incrementally from a saved state gives the same result.
	mid, _ := roomchain.Verify(room, b.chain[:3])
	restored := roomchain.Restore(*mid, mid.Spans())
	if !slices.Equal(restored.Admins, mid.Admins) {
		t.Fatalf("Restore: admins %v; want %v", restored.Admins, mid.Admins)
	}
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
	alice, bob, carol, mallory := user(t, "alice"), user(t, "bob"), user(t, "carol"), user(t, "mallory")
	b := newChain(t, alice)
	b.append(alice, roomchain.Statement{Kind: roomchain.KindAdd, Epoch: 1, Add: []roomchain.Member{member(bob, roomchain.RoleMember)}})
	base := slices.Clone(b.chain)
	after := func(sts ...roomchain.Signed) func() []roomchain.Signed {
		return func() []roomchain.Signed { return append(slices.Clone(base), sts...) }
	}
	swapped := member(bob, roomchain.RoleMember)
	swapped.XKey = mallory.Public().XKey
	// A history in which bob was removed, and one that drops the removal.
	removed := &builder{tb: t, chain: slices.Clone(base), state: b.state}
	removed.append(alice, roomchain.Statement{Kind: roomchain.KindRemove, Epoch: 2, Remove: keys(bob)})
	removed.append(alice, roomchain.Statement{Kind: roomchain.KindRekey, Epoch: 3})
	readd := func(epoch uint64) func() []roomchain.Signed {
		st := removed.next(alice, roomchain.Statement{Kind: roomchain.KindAdd, Epoch: epoch, Add: []roomchain.Member{member(bob, roomchain.RoleMember)}})
		return func() []roomchain.Signed { return append(slices.Clone(removed.chain), st) }
	}
	v1, err := json.Marshal(map[string]any{"v": 1, "room": room, "seq": 1, "kind": "create", "actor": alice.UserKey(), "epoch": 1, "name": "ops",
		"members": []roomchain.Member{member(alice, roomchain.RoleAdmin)}, "time": 0})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		chain func() []roomchain.Signed
		want  string
	}{
		{"ghost member added by the server", after(b.next(mallory, add(member(mallory, roomchain.RoleMember)))), "not a member"},
		{"added by a non-admin", after(b.next(bob, add(member(mallory, roomchain.RoleMember)))), "not a room admin"},
		{"removal of another by a non-admin", after(b.next(bob, roomchain.Statement{Kind: roomchain.KindRemove, Epoch: 2, Remove: keys(alice), Admins: keys(alice)})), "not a room admin"},
		{"epoch rolled back", after(b.next(alice, roomchain.Statement{Kind: roomchain.KindRekey, Epoch: 1})), "next epoch"},
		{"removal without a new epoch", after(b.next(alice, roomchain.Statement{Kind: roomchain.KindRemove, Epoch: 1, Remove: keys(bob)})), "next epoch"},
		{"member's xkey swapped by adding him again", after(b.next(alice, add(swapped))), "already a member"},
		{"member's record restated by a rekey", after(b.next(alice, roomchain.Statement{Kind: roomchain.KindRekey, Epoch: 2, Add: []roomchain.Member{swapped}})), "add and remove no one"},
		{"member already in the room added again", after(b.next(alice, add(member(bob, roomchain.RoleMember), member(carol, roomchain.RoleMember)))), "already a member"},
		{"non-member removed", after(b.next(alice, roomchain.Statement{Kind: roomchain.KindRemove, Epoch: 2, Remove: keys(carol)})), "removes " + carol.UserKey() + ", who is not a member"},
		{"admins that omit an admin", after(b.next(alice, roomchain.Statement{Kind: roomchain.KindRekey, Epoch: 2, Admins: keys(bob)})), "admins"},
		{"admins that promote a member", after(b.next(alice, roomchain.Statement{Kind: roomchain.KindRekey, Epoch: 2, Admins: keys(alice, bob)})), "admins"},
		{"admins that omit an added admin", after(b.next(alice, roomchain.Statement{Kind: roomchain.KindAdd, Epoch: 1, Add: []roomchain.Member{member(carol, roomchain.RoleAdmin)}, Admins: keys(alice)})), "admins"},
		{"no admins", after(b.next(alice, roomchain.Statement{Kind: roomchain.KindRekey, Epoch: 2, Admins: []string{}})), "admins"},
		{"the last admin leaves, naming herself still an admin", after(b.next(alice, roomchain.Statement{Kind: roomchain.KindRemove, Epoch: 2, Remove: keys(alice), Admins: keys(alice)})), "admins"},
		{"every member removed", after(b.next(alice, roomchain.Statement{Kind: roomchain.KindRemove, Epoch: 2, Remove: keys(alice, bob)})), "every member"},
		// A former member comes back only with a new epoch, the next one.
		{"former member re-added at the same epoch", readd(3), "a former member, at epoch 3: re-adding a former member rekeys"},
		{"former member re-added two epochs on", readd(5), "keep the epoch or start the next one"},
		{"former member re-added at an earlier epoch", readd(2), "keep the epoch or start the next one"},
		{"statement dropped", func() []roomchain.Signed {
			return []roomchain.Signed{base[0], b.next(alice, roomchain.Statement{Kind: roomchain.KindRekey, Epoch: 2})}
		}, "out of order"},
		{"removal dropped", func() []roomchain.Signed {
			c := slices.Clone(removed.chain)
			return append(c[:2], c[3])
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
		{"removed user's key altered", func() []roomchain.Signed {
			c := slices.Clone(removed.chain)
			c[2].Body = bytes.Replace(slices.Clone(c[2].Body), []byte(bob.UserKey()), []byte(alice.UserKey()), 1)
			return c
		}, "signature"},
		{"not canonical", func() []roomchain.Signed {
			c := slices.Clone(base)
			c[1].Body = append([]byte(" "), c[1].Body...)
			return c
		}, "canonical"},
		{"unknown field", func() []roomchain.Signed {
			c := slices.Clone(base)
			c[1].Body = bytes.Replace(slices.Clone(c[1].Body), []byte(`{"v":2`), []byte(`{"x":1,"v":2`), 1)
			return c
		}, "malformed"},
		{"version 1", func() []roomchain.Signed { return []roomchain.Signed{{Body: v1, Sig: make([]byte, 64)}} }, "statement version 1 (statement 1 of room " + room + "): this history was written by an older unibus"},
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

// TestReAddStartsANewEpoch: a former member is added back by an add
// statement of the next epoch, and is a member again from that epoch
// only, not in the epochs he was out for. A rekeying add may add new
// users too; a server resuming from its rows takes it as a verifier does.
func TestReAddStartsANewEpoch(t *testing.T) {
	alice, bob, carol := user(t, "alice"), user(t, "bob"), user(t, "carol")
	b := newChain(t, alice)
	b.append(alice, add(member(bob, roomchain.RoleMember)))
	b.append(alice, roomchain.Statement{Kind: roomchain.KindRemove, Epoch: 2, Remove: keys(bob)})
	b.append(alice, roomchain.Statement{Kind: roomchain.KindRekey, Epoch: 3})
	if !b.state.Former(bob.UserKey()) || b.state.Former(alice.UserKey()) || b.state.Former(carol.UserKey()) {
		t.Fatalf("Former(bob, alice, carol) = %v, %v, %v; want true, false, false", b.state.Former(bob.UserKey()), b.state.Former(alice.UserKey()), b.state.Former(carol.UserKey()))
	}
	at3 := b.state
	b.append(alice, roomchain.Statement{Kind: roomchain.KindAdd, Epoch: 4, Add: []roomchain.Member{member(bob, roomchain.RoleMember), member(carol, roomchain.RoleMember)}})
	st, err := roomchain.Verify(room, b.chain)
	if err != nil {
		t.Fatal(err)
	}
	if st.Epoch != 4 || !slices.Equal(roomchain.Users(st.Members), roomchain.Users(b.state.Members)) || len(st.Members) != 3 || st.Former(bob.UserKey()) {
		t.Fatalf("after the rekeying add: epoch %d, members %v, Former(bob) %v; want epoch 4, all three, false", st.Epoch, roomchain.Users(st.Members), st.Former(bob.UserKey()))
	}
	for _, c := range []struct {
		who   *identity.Identity
		epoch uint64
		want  bool
	}{{bob, 1, true}, {bob, 2, false}, {bob, 3, false}, {bob, 4, true}, {carol, 3, false}, {carol, 4, true}} {
		if _, got := st.MemberAt(c.who.UserKey(), c.epoch); got != c.want {
			t.Errorf("MemberAt(%s, %d) = %v; want %v", c.who.Name(), c.epoch, got, c.want)
		}
	}
	// A rekeying add of new users only is an add too.
	b.append(alice, roomchain.Statement{Kind: roomchain.KindAdd, Epoch: 5, Add: []roomchain.Member{member(user(t, "dave"), roomchain.RoleMember)}})

	resumed, err := roomchain.Resume(room, b.chain[3], roomchain.Users(at3.Members))
	if err != nil {
		t.Fatal(err)
	}
	got, err := resumed.Apply(room, b.chain[4])
	if err != nil || got.Epoch != 4 || !slices.Equal(roomchain.Users(got.Members), roomchain.Users(st.Members)) {
		t.Fatalf("the rekeying add after Resume = %v; want epoch 4 and the same members", err)
	}
}

// TestResumeChecksAsVerifyDoes resumes a state from each head and the
// member keys after it, as the server does, and checks that it takes the
// next statement to the same place as the whole verified chain.
func TestResumeChecksAsVerifyDoes(t *testing.T) {
	alice, bob, carol := user(t, "alice"), user(t, "bob"), user(t, "carol")
	b := newChain(t, alice)
	b.append(alice, add(member(bob, roomchain.RoleAdmin), member(carol, roomchain.RoleMember)))
	b.append(carol, roomchain.Statement{Kind: roomchain.KindRekey, Epoch: 2})
	b.append(bob, roomchain.Statement{Kind: roomchain.KindRemove, Epoch: 3, Remove: keys(alice)})
	b.append(carol, roomchain.Statement{Kind: roomchain.KindRemove, Epoch: 4, Remove: keys(carol)})
	for i := 1; i < len(b.chain); i++ {
		before, _ := roomchain.Verify(room, b.chain[:i])
		want, _ := roomchain.Verify(room, b.chain[:i+1])
		resumed, err := roomchain.Resume(room, b.chain[i-1], roomchain.Users(before.Members))
		if err != nil {
			t.Fatalf("Resume at %d: %v", i, err)
		}
		got, err := resumed.Apply(room, b.chain[i])
		if err != nil {
			t.Fatalf("statement %d after Resume: %v", i+1, err)
		}
		if got.Head != want.Head || got.Epoch != want.Epoch || !slices.Equal(roomchain.Users(got.Members), roomchain.Users(want.Members)) || !slices.Equal(got.Admins, want.Admins) {
			t.Fatalf("statement %d after Resume: head %.8s epoch %d members %v admins %v; want %.8s %d %v %v", i+1,
				got.Head, got.Epoch, roomchain.Users(got.Members), got.Admins, want.Head, want.Epoch, roomchain.Users(want.Members), want.Admins)
		}
	}
	// A resumed state refuses what the verified one refuses.
	at4, _ := roomchain.Verify(room, b.chain[:4]) // bob (admin) and carol
	resumed, err := roomchain.Resume(room, b.chain[3], roomchain.Users(at4.Members))
	if err != nil {
		t.Fatal(err)
	}
	b4 := &builder{tb: t, state: at4}
	if _, err := resumed.Apply(room, b4.next(alice, roomchain.Statement{Kind: roomchain.KindRekey, Epoch: 4})); err == nil || !strings.Contains(err.Error(), "not a member") {
		t.Fatalf("rekey by a former member after Resume = %v; want refused", err)
	}
	if _, err := resumed.Apply(room, b4.next(bob, roomchain.Statement{Kind: roomchain.KindRemove, Epoch: 4, Remove: keys(bob), Admins: keys(bob)})); err == nil || !strings.Contains(err.Error(), "admins") {
		t.Fatalf("the last admin leaving but naming himself admin after Resume = %v; want refused", err)
	}
	if _, err := resumed.Apply(room, b4.next(carol, roomchain.Statement{Kind: roomchain.KindAdd, Epoch: 3, Add: []roomchain.Member{member(alice, roomchain.RoleMember)}})); err == nil || !strings.Contains(err.Error(), "not a room admin") {
		t.Fatalf("an add by a plain member after Resume = %v; want refused", err)
	}
	// Rows that do not hold an admin the head names are refused.
	if _, err := roomchain.Resume(room, b.chain[len(b.chain)-1], keys(alice)); err == nil {
		t.Fatal("Resume with rows missing the head's admin succeeded")
	}
}

// bigRoom returns the verified state of a room of n members, alice (its
// admin) and n-1 others, as a client restores it from its pins.
func bigRoom(tb testing.TB, alice *identity.Identity, n int) *roomchain.State {
	tb.Helper()
	ms := []roomchain.Member{member(alice, roomchain.RoleAdmin)}
	for i := 1; i < n; i++ {
		pub := sha256.Sum256(fmt.Appendf(nil, "member %d", i))
		u, err := identity.UserKeyString(pub[:])
		if err != nil {
			tb.Fatal(err)
		}
		ms = append(ms, roomchain.Member{Public: identity.Public{Name: fmt.Sprintf("m%05d", i), User: u}, Role: roomchain.RoleMember})
	}
	slices.SortFunc(ms, func(a, b roomchain.Member) int { return strings.Compare(a.User, b.User) })
	spans := make([]roomchain.Span, len(ms))
	for i, m := range ms {
		spans[i] = roomchain.Span{Member: m, Since: 1}
	}
	head := sha256.Sum256([]byte("head"))
	return roomchain.Restore(roomchain.State{Room: room, Name: "big", Encrypted: true, Creator: alice.UserKey(), Seq: 2, Head: hex.EncodeToString(head[:]), Epoch: 1, Members: ms}, spans)
}

func TestRekeyOfALargeRoomCopiesNoMembers(t *testing.T) {
	alice := user(t, "alice")
	prev := bigRoom(t, alice, 10000)
	b := &builder{tb: t, state: prev}
	rekey := b.next(alice, roomchain.Statement{Kind: roomchain.KindRekey, Epoch: 2})
	if len(rekey.Body) > 1000 {
		t.Errorf("the rekey statement of a 10,000-member room is %d bytes; want a few hundred", len(rekey.Body))
	}
	next, err := prev.Apply(room, rekey)
	if err != nil {
		t.Fatal(err)
	}
	if &next.Members[0] != &prev.Members[0] || len(next.Members) != len(prev.Members) {
		t.Fatal("the state after a rekey copied the member list; want it shared with the state before")
	}
	if next.Epoch != 2 || prev.Epoch != 1 {
		t.Fatalf("epochs after the rekey: next %d, prev %d; want 2 and 1", next.Epoch, prev.Epoch)
	}
	last := prev.Members[len(prev.Members)-1].User
	if _, ok := next.MemberAt(last, 2); !ok {
		t.Fatalf("MemberAt(%s, 2) after the rekey = false; want true", last)
	}
	// A removal after the shared rekey builds its own lists and leaves the
	// states before it as they were.
	b.chain, b.state = []roomchain.Signed{rekey}, next
	gone, err := next.Apply(room, b.next(alice, roomchain.Statement{Kind: roomchain.KindRemove, Epoch: 3, Remove: []string{last}}))
	if err != nil {
		t.Fatal(err)
	}
	if len(gone.Members) != 9999 || len(next.Members) != 10000 || len(prev.Members) != 10000 {
		t.Fatalf("members after the removal: %d, %d before it, %d before the rekey; want 9999, 10000, 10000", len(gone.Members), len(next.Members), len(prev.Members))
	}
	if _, ok := next.MemberAt(last, 3); !ok {
		t.Fatal("the removal changed the span of the state before it")
	}
	if _, ok := gone.MemberAt(last, 3); ok {
		t.Fatal("MemberAt after the removal still finds the removed member")
	}
}

// BenchmarkApplyRekey10000 applies one rekey statement to the state of a
// 10,000-member room: what every member pays on every rekey.
func BenchmarkApplyRekey10000(b *testing.B) {
	alice := user(b, "alice")
	prev := bigRoom(b, alice, 10000)
	rekey := (&builder{tb: b, state: prev}).next(alice, roomchain.Statement{Kind: roomchain.KindRekey, Epoch: 2})
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := prev.Apply(room, rekey); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(rekey.Body)), "statement-bytes")
}

func FuzzParse(f *testing.F) {
	alice, bob := user(f, "alice"), user(f, "bob")
	b := newChain(f, alice)
	b.append(alice, add(member(bob, roomchain.RoleMember)))
	b.append(alice, roomchain.Statement{Kind: roomchain.KindRemove, Epoch: 2, Remove: keys(bob)})
	for _, s := range b.chain {
		f.Add(s.Body)
	}
	f.Add([]byte(`{"v":2}`))
	f.Add([]byte(`{"v":2,"room":"","seq":0,"kind":"","actor":"","epoch":0,"admins":[],"time":0}`))
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
		if !slices.IsSortedFunc(st.Add, func(a, b roomchain.Member) int { return strings.Compare(a.User, b.User) }) || !slices.IsSorted(st.Remove) || !slices.IsSorted(st.Admins) {
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
	c.append(alice, add(member(bob, roomchain.RoleMember)))
	c.append(alice, add(member(carol, roomchain.RoleMember)))
	for len(c.chain) < 10000 {
		c.append(bob, roomchain.Statement{Kind: roomchain.KindRekey, Epoch: c.state.Epoch + 1})
	}
	b.ResetTimer()
	for range b.N {
		if _, err := roomchain.Verify(room, c.chain); err != nil {
			b.Fatal(err)
		}
	}
}
