package e2ee_test

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"testing"

	"github.com/enmanuel/unibus/pkg/e2ee"
)

// shaStream is the deterministic byte stream used for test keys, nonces and
// plaintexts: SHA-256(seed || uint64be(0)) || SHA-256(seed || uint64be(1)) || …
// docs/envelope.md documents it as the generator of the test vectors.
type shaStream struct {
	seed    []byte
	counter uint64
	block   [sha256.Size]byte
	left    []byte
}

func newStream(seed string) *shaStream { return &shaStream{seed: []byte(seed)} }

func (s *shaStream) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if len(s.left) == 0 {
			h := sha256.New()
			h.Write(s.seed)
			h.Write(binary.BigEndian.AppendUint64(nil, s.counter))
			h.Sum(s.block[:0])
			s.counter++
			s.left = s.block[:]
		}
		c := copy(p[n:], s.left)
		s.left = s.left[c:]
		n += c
	}
	return n, nil
}

// streamBytes returns the first n bytes of the stream for seed.
func streamBytes(seed string, n int) []byte {
	b := make([]byte, n)
	io.ReadFull(newStream(seed), b)
	return b
}

func stream32(seed string) [32]byte {
	var k [32]byte
	copy(k[:], streamBytes(seed, 32))
	return k
}

// signer returns the Ed25519 key whose seed is stream32(seed).
func signer(seed string) ed25519.PrivateKey {
	s := stream32(seed)
	return ed25519.NewKeyFromSeed(s[:])
}

func pubOf(k ed25519.PrivateKey) ed25519.PublicKey {
	return k.Public().(ed25519.PublicKey)
}

func pub32(k ed25519.PrivateKey) [32]byte {
	var p [32]byte
	copy(p[:], pubOf(k))
	return p
}

// fixture holds the keys of the envelope tests.
type fixture struct {
	alice, mallory ed25519.PrivateKey
	key, otherKey  e2ee.RoomKey
}

func newFixture() *fixture {
	return &fixture{
		alice:    signer("alice"),
		mallory:  signer("mallory"),
		key:      e2ee.RoomKey(stream32("room key general 1")),
		otherKey: e2ee.RoomKey(stream32("room key other")),
	}
}

func testHeader(room string, epoch uint64, cleartext bool) e2ee.Header {
	return e2ee.Header{
		Cleartext: cleartext,
		Room:      room,
		Epoch:     epoch,
		ID:        [16]byte(streamBytes("id "+room, 16)),
		Time:      1_700_000_000_123_456_789,
	}
}

// mustSeal seals plaintext from alice to room "general" epoch 1.
func (fx *fixture) mustSeal(tb testing.TB, cleartext bool, plaintext []byte) []byte {
	tb.Helper()
	var key *e2ee.RoomKey
	if !cleartext {
		key = &fx.key
	}
	b, err := e2ee.Seal(testHeader("general", 1, cleartext), key, plaintext, fx.alice, newStream("nonce"))
	if err != nil {
		tb.Fatalf("Seal: %v", err)
	}
	return b
}

// receive runs the receiver pipeline: Parse, Verify, Open.
func receive(b []byte, sender ed25519.PublicKey, room string, epoch uint64, key *e2ee.RoomKey) ([]byte, error) {
	e, err := e2ee.Parse(b)
	if err != nil {
		return nil, err
	}
	if err := e.Verify(sender); err != nil {
		return nil, err
	}
	return e.Open(room, epoch, key)
}

var allErrors = map[string]error{
	"ErrMalformed":  e2ee.ErrMalformed,
	"ErrVersion":    e2ee.ErrVersion,
	"ErrSignature":  e2ee.ErrSignature,
	"ErrDecrypt":    e2ee.ErrDecrypt,
	"ErrWrongRoom":  e2ee.ErrWrongRoom,
	"ErrWrongEpoch": e2ee.ErrWrongEpoch,
	"ErrBadKey":     e2ee.ErrBadKey,
}

// errName returns the name of the sentinel err wraps, "" for nil, or
// "untyped".
func errName(err error) string {
	if err == nil {
		return ""
	}
	for name, target := range allErrors {
		if errors.Is(err, target) {
			return name
		}
	}
	return "untyped"
}

func wantErr(tb testing.TB, err, target error) {
	tb.Helper()
	if !errors.Is(err, target) {
		tb.Fatalf("got error %v, want %v", err, target)
	}
}

func wantErrIn(tb testing.TB, err error, targets ...error) {
	tb.Helper()
	for _, t := range targets {
		if errors.Is(err, t) {
			return
		}
	}
	tb.Fatalf("got error %v, want one of %v", err, targets)
}

func flipBit(b []byte, bit int) []byte {
	c := append([]byte(nil), b...)
	c[bit/8] ^= 1 << (bit % 8)
	return c
}
