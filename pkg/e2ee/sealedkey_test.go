package e2ee_test

import (
	"bytes"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"testing"

	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/crypto/curve25519"

	"github.com/enmanuel/unibus/pkg/e2ee"
)

// member is a test user's X25519 key pair and Ed25519 user key.
type member struct {
	xpriv, xpub [32]byte
	user        [32]byte
}

func newMember(name string) member {
	m := member{xpriv: stream32("xkey " + name), user: pub32(signer(name))}
	m.xpub = e2ee.XPublic(m.xpriv)
	return m
}

func TestXPublic(t *testing.T) {
	m := newMember("alice")
	want, err := curve25519.X25519(m.xpriv[:], curve25519.Basepoint)
	if err != nil || !bytes.Equal(m.xpub[:], want) {
		t.Fatalf("XPublic = %x, want %x (%v)", m.xpub, want, err)
	}
}

func TestSealRoomKeyRoundTrip(t *testing.T) {
	alice, bob := newMember("alice"), newMember("bob")
	key := e2ee.RoomKey(stream32("room key"))
	c := e2ee.SealedKeyContext{Room: "general", Epoch: 7, Recipient: bob.user}
	sealed, err := e2ee.SealRoomKey(key, c, alice.xpriv, bob.xpub, newStream("seal nonce"))
	if err != nil {
		t.Fatal(err)
	}
	if e2ee.SealedKeySize != 73 || len(sealed) != e2ee.SealedKeySize || sealed[0] != 1 {
		t.Fatalf("sealed = %x", sealed)
	}
	got, err := e2ee.OpenRoomKey(sealed, c, bob.xpriv, alice.xpub)
	if err != nil || got != key {
		t.Fatalf("OpenRoomKey = %x, %v", got, err)
	}
	sp, err := e2ee.NewSealingPairKey(alice.xpriv, bob.xpub)
	if err != nil {
		t.Fatal(err)
	}
	op, err := e2ee.NewOpeningPairKey(bob.xpriv, alice.xpub)
	if err != nil {
		t.Fatal(err)
	}
	again, err := sp.Seal(key, c, newStream("seal nonce"))
	if err != nil || !bytes.Equal(again, sealed) {
		t.Fatal("PairKey.Seal differs from SealRoomKey")
	}
	if got, err := op.Open(sealed, c); err != nil || got != key {
		t.Fatalf("PairKey.Open = %x, %v", got, err)
	}
	// Independent implementation of the scheme in docs/envelope.md.
	shared, _ := curve25519.X25519(alice.xpriv[:], bob.xpub[:])
	info := "unibus-seal-v1" + string(alice.xpub[:]) + string(bob.xpub[:])
	k, _ := hkdf.Key(sha256.New, shared, nil, info, 32)
	aead, _ := chacha20poly1305.NewX(k)
	aad := binary.BigEndian.AppendUint64([]byte("general\x00"), 7)
	aad = append(aad, bob.user[:]...)
	pt, err := aead.Open(nil, sealed[1:25], sealed[25:], aad)
	if err != nil || !bytes.Equal(pt, key[:]) {
		t.Fatalf("scheme differs from the spec: %v", err)
	}
}

func TestOpenRoomKeyReject(t *testing.T) {
	alice, bob, carol := newMember("alice"), newMember("bob"), newMember("carol")
	key := e2ee.RoomKey(stream32("room key"))
	c := e2ee.SealedKeyContext{Room: "general", Epoch: 7, Recipient: bob.user}
	sealed, err := e2ee.SealRoomKey(key, c, alice.xpriv, bob.xpub, newStream("seal nonce"))
	if err != nil {
		t.Fatal(err)
	}
	// Bob sealing to Alice uses the other direction's key.
	back, err := e2ee.SealRoomKey(key, e2ee.SealedKeyContext{Room: "general", Epoch: 7, Recipient: alice.user}, bob.xpriv, alice.xpub, nil)
	if err != nil {
		t.Fatal(err)
	}
	with := func(f func(*e2ee.SealedKeyContext)) e2ee.SealedKeyContext { d := c; f(&d); return d }
	tests := []struct {
		name          string
		sealed        []byte
		c             e2ee.SealedKeyContext
		priv, peerPub [32]byte
		want          error
	}{
		{"tampered", flipBit(sealed, 40*8+3), c, bob.xpriv, alice.xpub, e2ee.ErrDecrypt},
		{"tampered nonce", flipBit(sealed, 8), c, bob.xpriv, alice.xpub, e2ee.ErrDecrypt},
		{"tampered tag", flipBit(sealed, 72*8), c, bob.xpriv, alice.xpub, e2ee.ErrDecrypt},
		{"wrong recipient", sealed, c, carol.xpriv, alice.xpub, e2ee.ErrDecrypt},
		{"wrong sealer", sealed, c, bob.xpriv, carol.xpub, e2ee.ErrDecrypt},
		{"wrong recipient user", sealed, with(func(d *e2ee.SealedKeyContext) { d.Recipient = carol.user }), bob.xpriv, alice.xpub, e2ee.ErrDecrypt},
		{"wrong epoch", sealed, with(func(d *e2ee.SealedKeyContext) { d.Epoch = 8 }), bob.xpriv, alice.xpub, e2ee.ErrDecrypt},
		{"wrong room", sealed, with(func(d *e2ee.SealedKeyContext) { d.Room = "general2" }), bob.xpriv, alice.xpub, e2ee.ErrDecrypt},
		{"reflected direction", back, with(func(d *e2ee.SealedKeyContext) { d.Recipient = alice.user }), bob.xpriv, alice.xpub, e2ee.ErrDecrypt},
		{"truncated", sealed[:72], c, bob.xpriv, alice.xpub, e2ee.ErrMalformed},
		{"empty", nil, c, bob.xpriv, alice.xpub, e2ee.ErrMalformed},
		{"trailing byte", append(bytes.Clone(sealed), 0), c, bob.xpriv, alice.xpub, e2ee.ErrMalformed},
		{"unknown version", append([]byte{2}, sealed[1:]...), c, bob.xpriv, alice.xpub, e2ee.ErrVersion},
		{"bad room", sealed, with(func(d *e2ee.SealedKeyContext) { d.Room = "a.b" }), bob.xpriv, alice.xpub, e2ee.ErrMalformed},
		{"zero epoch", sealed, with(func(d *e2ee.SealedKeyContext) { d.Epoch = 0 }), bob.xpriv, alice.xpub, e2ee.ErrMalformed},
		{"zero sealer key", sealed, c, bob.xpriv, [32]byte{}, e2ee.ErrBadKey},
		{"low-order sealer key", sealed, c, bob.xpriv, [32]byte{1}, e2ee.ErrBadKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := e2ee.OpenRoomKey(tt.sealed, tt.c, tt.priv, tt.peerPub)
			wantErr(t, err, tt.want)
			if got != (e2ee.RoomKey{}) {
				t.Fatal("key returned with an error")
			}
		})
	}
	t.Run("every bit", func(t *testing.T) {
		op, err := e2ee.NewOpeningPairKey(bob.xpriv, alice.xpub)
		if err != nil {
			t.Fatal(err)
		}
		for bit := range len(sealed) * 8 {
			_, err := op.Open(flipBit(sealed, bit), c)
			if bit < 8 {
				wantErr(t, err, e2ee.ErrVersion)
			} else {
				wantErr(t, err, e2ee.ErrDecrypt)
			}
		}
	})
}

func TestSealRoomKeyErrors(t *testing.T) {
	alice, bob := newMember("alice"), newMember("bob")
	c := e2ee.SealedKeyContext{Room: "general", Epoch: 1, Recipient: bob.user}
	// Low-order points of Curve25519 (all give a zero shared secret).
	lowOrder := [][32]byte{
		{},
		{1},
		{0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae, 0x16, 0x56, 0xe3, 0xfa, 0xf1, 0x9f, 0xc4, 0x6a, 0xda, 0x09, 0x8d, 0xeb, 0x9c, 0x32, 0xb1, 0xfd, 0x86, 0x62, 0x05, 0x16, 0x5f, 0x49, 0xb8, 0x00},
		{0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f},
	}
	for i, p := range lowOrder {
		t.Run("low order "+string(rune('0'+i)), func(t *testing.T) {
			_, err := e2ee.SealRoomKey(e2ee.RoomKey{}, c, alice.xpriv, p, nil)
			wantErr(t, err, e2ee.ErrBadKey)
			_, err = e2ee.NewSealingPairKey(alice.xpriv, p)
			wantErr(t, err, e2ee.ErrBadKey)
		})
	}
	p, _ := e2ee.NewSealingPairKey(alice.xpriv, bob.xpub)
	for _, tt := range []struct {
		name string
		c    e2ee.SealedKeyContext
	}{
		{"empty room", e2ee.SealedKeyContext{Epoch: 1}},
		{"zero epoch", e2ee.SealedKeyContext{Room: "general"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := p.Seal(e2ee.RoomKey{}, tt.c, nil)
			wantErr(t, err, e2ee.ErrMalformed)
		})
	}
}

func TestNewKeys(t *testing.T) {
	a, err := e2ee.NewRoomKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := e2ee.NewRoomKey(nil)
	f, _ := e2ee.NewFileKey(nil)
	if a == b || a == (e2ee.RoomKey{}) || f == (e2ee.FileKey{}) {
		t.Fatal("random keys repeat or are zero")
	}
	if k, _ := e2ee.NewRoomKey(newStream("k")); k != e2ee.RoomKey(stream32("k")) {
		t.Fatal("NewRoomKey does not read rand")
	}
	if _, err := e2ee.NewFileKey(bytes.NewReader(nil)); err == nil {
		t.Fatal("NewFileKey with an empty reader succeeded")
	}
}

// TestXKeyPair: pair keys made from a key pair seal and open exactly as the
// functions that derive the public key each time; a pair whose public half
// is not its private key's opens nothing.
func TestXKeyPair(t *testing.T) {
	alice, bob := newMember("alice"), newMember("bob")
	c := e2ee.SealedKeyContext{Room: "general", Epoch: 3, Recipient: bob.user}
	key := e2ee.RoomKey(stream32("room key"))
	sealer, err := e2ee.NewXKeyPair(alice.xpriv).SealingPairKey(bob.xpub)
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := sealer.Seal(key, c, newStream("nonce"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := e2ee.OpenRoomKey(sealed, c, bob.xpriv, alice.xpub); err != nil || got != key {
		t.Fatalf("OpenRoomKey of a key sealed with an XKeyPair = %x, %v", got, err)
	}
	opener, err := e2ee.XKeyPair{Private: bob.xpriv, Public: bob.xpub}.OpeningPairKey(alice.xpub)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := opener.Open(sealed, c); err != nil || got != key {
		t.Fatalf("XKeyPair.OpeningPairKey = %x, %v", got, err)
	}
	wrong, err := e2ee.XKeyPair{Private: bob.xpriv, Public: alice.xpub}.OpeningPairKey(alice.xpub)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wrong.Open(sealed, c); err == nil {
		t.Fatal("a key pair with another public half opened the sealed key")
	}
}
