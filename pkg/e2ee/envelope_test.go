package e2ee_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"strconv"
	"testing"
	"testing/iotest"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/enmanuel/unibus/pkg/e2ee"
)

// Offsets in an envelope for room "general" (7 bytes), per docs/envelope.md.
const (
	gRoomLen   = len("general")
	offEpoch   = 3 + gRoomLen
	offSender  = offEpoch + 8
	offID      = offSender + 32
	offTime    = offID + 16
	offNonce   = offTime + 8
	offPayLen  = offNonce + 24
	offPayload = offPayLen + 4
)

// encodeRaw encodes an envelope from its fields per docs/envelope.md,
// independently of the package, and signs it with signer if not nil.
func encodeRaw(version, flags byte, room string, epoch uint64, sender []byte, id [16]byte, tm int64, nonce [24]byte, payload []byte, signer ed25519.PrivateKey) []byte {
	b := []byte{version, flags, byte(len(room))}
	b = append(b, room...)
	b = binary.BigEndian.AppendUint64(b, epoch)
	b = append(b, sender...)
	b = append(b, id[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(tm))
	b = append(b, nonce[:]...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(payload)))
	b = append(b, payload...)
	return appendSig(b, signer)
}

// appendSig appends signer's signature over the prefix and b, or 64 zero
// bytes if signer is nil.
func appendSig(b []byte, signer ed25519.PrivateKey) []byte {
	if signer == nil {
		return append(b, make([]byte, 64)...)
	}
	return append(b, ed25519.Sign(signer, append([]byte(e2ee.SignaturePrefix), b...))...)
}

// resign replaces the signature of envelope bytes b with signer's.
func resign(b []byte, signer ed25519.PrivateKey) []byte {
	c := append([]byte(nil), b[:len(b)-64]...)
	return appendSig(c, signer)
}

func TestEnvelopeRoundTrip(t *testing.T) {
	fx := newFixture()
	for _, cleartext := range []bool{false, true} {
		for _, size := range []int{0, 1, 1 << 10, 64 << 10, e2ee.MaxPlaintext} {
			name := "encrypted"
			if cleartext {
				name = "cleartext"
			}
			t.Run(name+"/"+strconv.Itoa(size), func(t *testing.T) {
				pt := streamBytes("plaintext", size)
				b := fx.mustSeal(t, cleartext, pt)
				wantLen := e2ee.EnvelopeOverhead + gRoomLen + size
				if !cleartext {
					wantLen += e2ee.Overhead
				}
				if len(b) != wantLen {
					t.Fatalf("len = %d, want %d", len(b), wantLen)
				}
				e, err := e2ee.Parse(b)
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				if !bytes.Equal(e.Marshal(), b) {
					t.Fatal("Marshal differs from parsed bytes")
				}
				if e.Version != e2ee.EnvelopeVersion || e.Cleartext != cleartext || e.Room != "general" ||
					e.Epoch != 1 || e.Sender != pub32(fx.alice) || e.Time != 1_700_000_000_123_456_789 {
					t.Fatalf("header = %+v", e.Header)
				}
				if cleartext != (e.Nonce == [e2ee.NonceSize]byte{}) {
					t.Fatalf("nonce = %x", e.Nonce)
				}
				if err := e.Verify(pubOf(fx.alice)); err != nil {
					t.Fatalf("Verify: %v", err)
				}
				key := &fx.key
				if cleartext {
					key = nil
				}
				got, err := e.Open("general", 1, key)
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				if got == nil || !bytes.Equal(got, pt) {
					t.Fatalf("plaintext differs (len %d, want %d)", len(got), len(pt))
				}
			})
		}
	}
}

// TestEnvelopeLayout checks the encoding against docs/envelope.md with
// independent code: field offsets, the signed message and the AAD.
func TestEnvelopeLayout(t *testing.T) {
	fx := newFixture()
	pt := []byte("hello, room")
	b := fx.mustSeal(t, false, pt)
	h := testHeader("general", 1, false)
	if b[0] != 1 || b[1] != 0 || int(b[2]) != gRoomLen || string(b[3:offEpoch]) != "general" {
		t.Fatalf("prefix = %x", b[:offEpoch])
	}
	if binary.BigEndian.Uint64(b[offEpoch:]) != 1 || !bytes.Equal(b[offSender:offID], pubOf(fx.alice)) ||
		!bytes.Equal(b[offID:offTime], h.ID[:]) || int64(binary.BigEndian.Uint64(b[offTime:])) != h.Time {
		t.Fatal("epoch, sender, id or time misplaced")
	}
	n := int(binary.BigEndian.Uint32(b[offPayLen:]))
	if n != len(pt)+16 || len(b) != offPayload+n+64 {
		t.Fatalf("payload length %d, envelope length %d", n, len(b))
	}
	msg := append([]byte("unibus-envelope-v1\x00"), b[:len(b)-64]...)
	if !ed25519.Verify(pubOf(fx.alice), msg, b[len(b)-64:]) {
		t.Fatal("signature is not over prefix || bytes before it")
	}
	aead, _ := chacha20poly1305.NewX(fx.key[:])
	got, err := aead.Open(nil, b[offNonce:offPayLen], b[offPayload:offPayload+n], b[:offPayLen])
	if err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("payload is not XChaCha20-Poly1305 with the header as AAD: %v", err)
	}
	c := fx.mustSeal(t, true, pt)
	if c[1] != 1 || !bytes.Equal(c[offNonce:offPayLen], make([]byte, 24)) || !bytes.Equal(c[offPayload:len(c)-64], pt) {
		t.Fatal("cleartext envelope layout")
	}
}

func TestEnvelopeReject(t *testing.T) {
	fx := newFixture()
	enc := fx.mustSeal(t, false, []byte("secret"))
	clear := fx.mustSeal(t, true, []byte("public"))
	alice, mallory := pubOf(fx.alice), pubOf(fx.mallory)
	h := testHeader("general", 1, false)
	var nonce [24]byte
	copy(nonce[:], enc[offNonce:])
	raw := func(version, flags byte, room string, epoch uint64, nonce [24]byte, payload []byte) []byte {
		return encodeRaw(version, flags, room, epoch, alice, h.ID, h.Time, nonce, payload, fx.alice)
	}
	set := func(b []byte, off int, v ...byte) []byte {
		c := append([]byte(nil), b...)
		copy(c[off:], v)
		return c
	}
	tests := []struct {
		name   string
		b      []byte
		sender ed25519.PublicKey
		room   string
		epoch  uint64
		key    *e2ee.RoomKey
		want   error
	}{
		{"trailing byte", append(append([]byte(nil), enc...), 0), alice, "general", 1, &fx.key, e2ee.ErrMalformed},
		{"trailing signature", append(append([]byte(nil), enc...), enc[len(enc)-64:]...), alice, "general", 1, &fx.key, e2ee.ErrMalformed},
		{"empty", nil, alice, "general", 1, &fx.key, e2ee.ErrMalformed},
		{"wrong sender key", enc, mallory, "general", 1, &fx.key, e2ee.ErrSignature},
		{"short sender key", enc, alice[:31], "general", 1, &fx.key, e2ee.ErrSignature},
		{"forged sender", resign(enc, fx.mallory), alice, "general", 1, &fx.key, e2ee.ErrSignature},
		{"forged sender verified as signer", resign(enc, fx.mallory), mallory, "general", 1, &fx.key, e2ee.ErrSignature},
		{"zero signature", resign(enc, nil), alice, "general", 1, &fx.key, e2ee.ErrSignature},
		{"wrong room key", enc, alice, "general", 1, &fx.otherKey, e2ee.ErrDecrypt},
		{"wrong room", enc, alice, "random", 1, &fx.key, e2ee.ErrWrongRoom},
		{"replay into another room", enc, alice, "general2", 1, &fx.key, e2ee.ErrWrongRoom},
		{"wrong epoch", enc, alice, "general", 2, &fx.key, e2ee.ErrWrongEpoch},
		{"cleartext in encrypted room", clear, alice, "general", 1, &fx.key, e2ee.ErrDecrypt},
		{"encrypted in cleartext room", enc, alice, "general", 1, nil, e2ee.ErrDecrypt},
		{"unknown version 2", set(enc, 0, 2), alice, "general", 1, &fx.key, e2ee.ErrVersion},
		{"unknown version 0", set(enc, 0, 0), alice, "general", 1, &fx.key, e2ee.ErrVersion},
		{"unknown version short", []byte{2}, alice, "general", 1, &fx.key, e2ee.ErrVersion},
		{"unknown flag 0x02", set(enc, 1, 0x02), alice, "general", 1, &fx.key, e2ee.ErrMalformed},
		{"unknown flag 0x80", set(clear, 1, 0x81), alice, "general", 1, nil, e2ee.ErrMalformed},
		{"cleartext flag with nonce", set(enc, 1, 0x01), alice, "general", 1, nil, e2ee.ErrMalformed},
		{"zero epoch", raw(1, 0, "general", 0, nonce, enc[offPayload:len(enc)-64]), alice, "general", 0, &fx.key, e2ee.ErrMalformed},
		{"room dot", set(enc, 3, '.'), alice, "general", 1, &fx.key, e2ee.ErrMalformed},
		{"room space", set(enc, 4, ' '), alice, "general", 1, &fx.key, e2ee.ErrMalformed},
		{"room nul", set(enc, 5, 0), alice, "general", 1, &fx.key, e2ee.ErrMalformed},
		{"room non-ascii", set(enc, 6, 0xc3), alice, "general", 1, &fx.key, e2ee.ErrMalformed},
		{"room slash", raw(1, 0, "a/b", 1, nonce, enc[offPayload:len(enc)-64]), alice, "a/b", 1, &fx.key, e2ee.ErrMalformed},
		{"room length 0", raw(1, 0, "", 1, nonce, enc[offPayload:len(enc)-64]), alice, "", 1, &fx.key, e2ee.ErrMalformed},
		{"room length 65", raw(1, 0, string(bytes.Repeat([]byte{'a'}, 65)), 1, nonce, enc[offPayload:len(enc)-64]), alice, "", 1, &fx.key, e2ee.ErrMalformed},
		{"payload shorter than tag", raw(1, 0, "general", 1, nonce, make([]byte, 15)), alice, "general", 1, &fx.key, e2ee.ErrMalformed},
		{"payload length too large", set(enc, offPayLen, 0x00, 0x10, 0x00, 0x11), alice, "general", 1, &fx.key, e2ee.ErrMalformed},
		{"payload length huge", set(enc, offPayLen, 0xff, 0xff, 0xff, 0xff), alice, "general", 1, &fx.key, e2ee.ErrMalformed},
		{"payload length one less", set(enc, offPayLen+3, enc[offPayLen+3]-1), alice, "general", 1, &fx.key, e2ee.ErrMalformed},
		{"cleartext payload too large", raw(1, 1, "general", 1, [24]byte{}, make([]byte, e2ee.MaxPlaintext+1)), alice, "general", 1, nil, e2ee.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pt, err := receive(tt.b, tt.sender, tt.room, tt.epoch, tt.key)
			wantErr(t, err, tt.want)
			if pt != nil {
				t.Fatal("plaintext returned with an error")
			}
		})
	}
}

// TestEnvelopeAcceptLimits checks the largest legal fields.
func TestEnvelopeAcceptLimits(t *testing.T) {
	fx := newFixture()
	room := "A-z_09" + string(bytes.Repeat([]byte{'x'}, e2ee.MaxRoomIDLen-6))
	h := testHeader(room, ^uint64(0), false)
	h.Time = -1
	b, err := e2ee.Seal(h, &fx.key, []byte("x"), fx.alice, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := receive(b, pubOf(fx.alice), room, ^uint64(0), &fx.key); err != nil {
		t.Fatal(err)
	}
}

// TestEnvelopeBitFlips flips every bit of an envelope. The receiver must
// reject each with the error of the field's class. Then, as a sender who
// re-signs the flipped bytes, it checks that the header is bound to the
// ciphertext as AAD.
func TestEnvelopeBitFlips(t *testing.T) {
	fx := newFixture()
	b := fx.mustSeal(t, false, []byte("bit flips"))
	sigStart := len(b) - 64
	classes := []struct {
		name       string
		start, end int
		want       []error // receiver errors allowed for a flip in this class
		resigned   []error // errors allowed after re-signing (nil: skip)
	}{
		{"version", 0, 1, []error{e2ee.ErrVersion}, nil},
		{"flags", 1, 2, []error{e2ee.ErrMalformed}, nil},
		{"room length", 2, 3, []error{e2ee.ErrMalformed}, nil},
		{"room", 3, offEpoch, []error{e2ee.ErrMalformed, e2ee.ErrSignature}, []error{e2ee.ErrMalformed, e2ee.ErrWrongRoom}},
		{"epoch", offEpoch, offSender, []error{e2ee.ErrMalformed, e2ee.ErrSignature}, []error{e2ee.ErrMalformed, e2ee.ErrWrongEpoch}},
		{"sender", offSender, offID, []error{e2ee.ErrSignature}, nil},
		{"id", offID, offTime, []error{e2ee.ErrSignature}, []error{e2ee.ErrDecrypt}},
		{"time", offTime, offNonce, []error{e2ee.ErrSignature}, []error{e2ee.ErrDecrypt}},
		{"nonce", offNonce, offPayLen, []error{e2ee.ErrSignature}, []error{e2ee.ErrDecrypt}},
		{"payload length", offPayLen, offPayload, []error{e2ee.ErrMalformed}, nil},
		{"payload", offPayload, sigStart, []error{e2ee.ErrSignature}, []error{e2ee.ErrDecrypt}},
		{"signature", sigStart, len(b), []error{e2ee.ErrSignature}, nil},
	}
	for _, c := range classes {
		t.Run(c.name, func(t *testing.T) {
			for bit := c.start * 8; bit < c.end*8; bit++ {
				f := flipBit(b, bit)
				_, err := receive(f, pubOf(fx.alice), "general", 1, &fx.key)
				if err == nil {
					t.Fatalf("bit %d: accepted", bit)
				}
				wantErrIn(t, err, c.want...)
				if c.resigned != nil {
					_, err := receive(resign(f, fx.alice), pubOf(fx.alice), "general", 1, &fx.key)
					if err == nil {
						t.Fatalf("bit %d re-signed: accepted", bit)
					}
					wantErrIn(t, err, c.resigned...)
				}
			}
		})
	}
}

func TestEnvelopeTruncation(t *testing.T) {
	fx := newFixture()
	for _, cleartext := range []bool{false, true} {
		b := fx.mustSeal(t, cleartext, []byte("truncate me"))
		t.Run("cleartext="+strconv.FormatBool(cleartext), func(t *testing.T) {
			for n := range len(b) {
				_, err := e2ee.Parse(b[:n])
				if !errors.Is(err, e2ee.ErrMalformed) {
					t.Fatalf("length %d: got %v, want ErrMalformed", n, err)
				}
			}
		})
	}
}

func TestSealErrors(t *testing.T) {
	fx := newFixture()
	good := testHeader("general", 1, false)
	with := func(f func(*e2ee.Header)) e2ee.Header { h := good; f(&h); return h }
	tests := []struct {
		name   string
		h      e2ee.Header
		key    *e2ee.RoomKey
		pt     []byte
		signer ed25519.PrivateKey
		want   error
	}{
		{"version 2", with(func(h *e2ee.Header) { h.Version = 2 }), &fx.key, nil, fx.alice, e2ee.ErrVersion},
		{"empty room", with(func(h *e2ee.Header) { h.Room = "" }), &fx.key, nil, fx.alice, e2ee.ErrMalformed},
		{"bad room char", with(func(h *e2ee.Header) { h.Room = "a.b" }), &fx.key, nil, fx.alice, e2ee.ErrMalformed},
		{"room too long", with(func(h *e2ee.Header) { h.Room = string(make([]byte, 65)) }), &fx.key, nil, fx.alice, e2ee.ErrMalformed},
		{"zero epoch", with(func(h *e2ee.Header) { h.Epoch = 0 }), &fx.key, nil, fx.alice, e2ee.ErrMalformed},
		{"too large", good, &fx.key, make([]byte, e2ee.MaxPlaintext+1), fx.alice, e2ee.ErrMalformed},
		{"no key", good, nil, nil, fx.alice, e2ee.ErrBadKey},
		{"key for cleartext", with(func(h *e2ee.Header) { h.Cleartext = true }), &fx.key, nil, fx.alice, e2ee.ErrBadKey},
		{"short signer", good, &fx.key, nil, fx.alice[:32], e2ee.ErrBadKey},
		{"sender is not signer", with(func(h *e2ee.Header) { h.Sender = pub32(fx.alice) }), &fx.key, nil, fx.mallory, e2ee.ErrBadKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := []byte("keep")
			out, err := e2ee.AppendSeal(dst, tt.h, tt.key, tt.pt, tt.signer, nil)
			wantErr(t, err, tt.want)
			if string(out) != "keep" {
				t.Fatalf("dst changed to %q", out)
			}
		})
	}
	t.Run("rand fails", func(t *testing.T) {
		_, err := e2ee.Seal(good, &fx.key, nil, fx.alice, iotest.ErrReader(errors.New("no entropy")))
		if err == nil {
			t.Fatal("no error")
		}
	})
}

func TestSealFills(t *testing.T) {
	fx := newFixture()
	h := e2ee.Header{Room: "general", Epoch: 1, Nonce: [24]byte{1}}
	b, err := e2ee.Seal(h, &fx.key, nil, fx.alice, newStream("fill"))
	if err != nil {
		t.Fatal(err)
	}
	e, err := e2ee.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	r := streamBytes("fill", 40)
	if e.Sender != pub32(fx.alice) || !bytes.Equal(e.ID[:], r[:16]) || !bytes.Equal(e.Nonce[:], r[16:]) || e.Version != 1 {
		t.Fatalf("header = %+v", e.Header)
	}
	c, err := e2ee.Seal(e2ee.Header{Cleartext: true, Room: "general", Epoch: 1, Nonce: [24]byte{1}}, nil, nil, fx.alice, nil)
	if err != nil {
		t.Fatal(err)
	}
	if e, err = e2ee.Parse(c); err != nil || e.Nonce != [24]byte{} || e.ID == [16]byte{} {
		t.Fatalf("cleartext: %v %+v", err, e)
	}
}

func TestAppendSeal(t *testing.T) {
	fx := newFixture()
	h := testHeader("general", 1, false)
	pt := []byte("append")
	want, _ := e2ee.Seal(h, &fx.key, pt, fx.alice, newStream("n"))
	got, err := e2ee.AppendSeal([]byte("prefix"), h, &fx.key, pt, fx.alice, newStream("n"))
	if err != nil {
		t.Fatal(err)
	}
	if string(got[:6]) != "prefix" || !bytes.Equal(got[6:], want) {
		t.Fatal("AppendSeal differs from Seal")
	}
	buf := make([]byte, 0, 4096)
	rnd := newStream("allocs")
	allocs := testing.AllocsPerRun(100, func() {
		buf, _ = e2ee.AppendSeal(buf[:0], h, &fx.key, pt, fx.alice, rnd)
	})
	// The cipher allocates its state; the envelope itself must not.
	if allocs > 2 {
		t.Fatalf("AppendSeal allocates %v times", allocs)
	}
	t.Logf("AppendSeal allocations: %v", allocs)
}

// TestEnvelopeFields checks Envelopes built or changed field by field.
func TestEnvelopeFields(t *testing.T) {
	fx := newFixture()
	b := fx.mustSeal(t, false, []byte("fields"))
	e, err := e2ee.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	built := &e2ee.Envelope{Header: e.Header, Payload: bytes.Clone(e.Payload), Signature: e.Signature}
	if !bytes.Equal(built.Marshal(), b) {
		t.Fatal("Marshal of a built envelope differs")
	}
	if err := built.Verify(pubOf(fx.alice)); err != nil {
		t.Fatal(err)
	}
	if pt, err := built.Open("general", 1, &fx.key); err != nil || string(pt) != "fields" {
		t.Fatalf("Open: %q %v", pt, err)
	}
	// A field changed after Parse is what Verify and Open see.
	changed := *e
	changed.Time++
	wantErr(t, changed.Verify(pubOf(fx.alice)), e2ee.ErrSignature)
	_, err = changed.Open("general", 1, &fx.key)
	wantErr(t, err, e2ee.ErrDecrypt)
	changed = *e
	changed.Payload = bytes.Clone(e.Payload)
	changed.Payload[0] ^= 1
	wantErr(t, changed.Verify(pubOf(fx.alice)), e2ee.ErrSignature)
	changed = *e
	changed.Signature[0] ^= 1
	wantErr(t, changed.Verify(pubOf(fx.alice)), e2ee.ErrSignature)
	if err := e.Verify(pubOf(fx.alice)); err != nil {
		t.Fatalf("original changed: %v", err)
	}
	// Parse copies its input.
	clear(b)
	if err := e.Verify(pubOf(fx.alice)); err != nil {
		t.Fatalf("Parse aliases its input: %v", err)
	}
}

func TestMessageID(t *testing.T) {
	h := e2ee.Header{ID: [16]byte{0x00, 0x01, 0xab, 0xff, 15: 0x10}}
	if got, want := h.MessageID(), "0001abff000000000000000000000010"; got != want {
		t.Fatalf("MessageID = %q, want %q", got, want)
	}
}

func TestValidRoomID(t *testing.T) {
	tests := []struct {
		room string
		ok   bool
	}{
		{"a", true}, {"General_room-2", true}, {string(bytes.Repeat([]byte{'z'}, 64)), true},
		{"", false}, {string(bytes.Repeat([]byte{'z'}, 65)), false}, {"a.b", false}, {"a b", false},
		{"a*", false}, {"a>", false}, {"é", false}, {"a\x00", false},
	}
	for _, tt := range tests {
		t.Run(tt.room, func(t *testing.T) {
			if got := e2ee.ValidRoomID(tt.room); got != tt.ok {
				t.Fatalf("ValidRoomID(%q) = %v", tt.room, got)
			}
		})
	}
}

func TestOpenInPlace(t *testing.T) {
	fx := newFixture()
	for _, cleartext := range []bool{false, true} {
		b := fx.mustSeal(t, cleartext, []byte("in place"))
		var key *e2ee.RoomKey
		if !cleartext {
			key = &fx.key
		}
		env, err := e2ee.Parse(b)
		if err != nil {
			t.Fatal(err)
		}
		want, err := env.Open("general", 1, key)
		if err != nil {
			t.Fatal(err)
		}
		got, err := env.OpenInPlace("general", 1, key)
		if err != nil || string(got) != string(want) {
			t.Errorf("cleartext=%v: OpenInPlace = %q, %v; want %q", cleartext, got, err, want)
		}
		// The checks of Open apply: another room, epoch or key fails.
		for _, c := range []struct {
			room  string
			epoch uint64
			key   *e2ee.RoomKey
		}{{"other", 1, key}, {"general", 2, key}, {"general", 1, &fx.otherKey}} {
			env, _ := e2ee.Parse(b)
			if cleartext && c.key != nil && c.key == &fx.otherKey {
				continue
			}
			if _, err := env.OpenInPlace(c.room, c.epoch, c.key); err == nil {
				t.Errorf("cleartext=%v: OpenInPlace(%s, %d) succeeded", cleartext, c.room, c.epoch)
			}
		}
	}
	// A tampered ciphertext fails in place as it does in a copy.
	b := fx.mustSeal(t, false, []byte("in place"))
	b[len(b)-e2ee.SignatureSize-1] ^= 1
	env, _ := e2ee.Parse(b)
	if _, err := env.OpenInPlace("general", 1, &fx.key); !errors.Is(err, e2ee.ErrDecrypt) {
		t.Errorf("tampered: %v, want ErrDecrypt", err)
	}
}

func TestParseToUsesTheBuffer(t *testing.T) {
	fx := newFixture()
	b := fx.mustSeal(t, false, []byte("reuse"))
	buf := make([]byte, 0, 4096)
	env, err := e2ee.ParseTo(buf, b)
	if err != nil {
		t.Fatal(err)
	}
	if msg := env.SignedMessage(); &msg[0] != &buf[:1][0] {
		t.Error("ParseTo did not parse into the buffer given")
	}
	if err := env.Verify(fx.alice.Public().(ed25519.PublicKey)); err != nil {
		t.Fatal(err)
	}
	// Too small a buffer: a copy of its own, as Parse makes.
	small := make([]byte, 0, 8)
	env, err = e2ee.ParseTo(small, b)
	if err != nil {
		t.Fatal(err)
	}
	if msg := env.SignedMessage(); &msg[0] == &small[:1][0] {
		t.Error("ParseTo wrote past a buffer too small")
	}
	if !bytes.Equal(env.Marshal(), b) {
		t.Error("ParseTo with a small buffer does not round-trip")
	}
}
