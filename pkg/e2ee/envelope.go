package e2ee

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"slices"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/enmanuel/unibus/internal/edsig"
)

// Envelope format constants. See docs/envelope.md for the byte layout.
const (
	// EnvelopeVersion is the version byte of the envelope format.
	EnvelopeVersion = 1
	// MaxRoomIDLen is the maximum length in bytes of a room id.
	MaxRoomIDLen = 64
	// NonceSize is the size of an envelope nonce (XChaCha20-Poly1305).
	NonceSize = chacha20poly1305.NonceSizeX
	// Overhead is the number of bytes encryption adds to a payload
	// (the Poly1305 tag).
	Overhead = chacha20poly1305.Overhead
	// SignatureSize is the size of an envelope signature (Ed25519).
	SignatureSize = ed25519.SignatureSize
	// MaxPlaintext is the largest message plaintext, 1 MiB. It is also the
	// largest payload of a cleartext envelope.
	MaxPlaintext = 1 << 20
	// MaxPayload is the largest payload field of any envelope: the
	// ciphertext of a [MaxPlaintext]-byte message.
	MaxPayload = MaxPlaintext + Overhead
	// EnvelopeOverhead is the size of an envelope minus its room id and
	// payload: every fixed-size field, including the payload length and the
	// signature.
	EnvelopeOverhead = fixedHeaderLen + 4 + SignatureSize
)

// SignaturePrefix is the domain-separation prefix of the message that an
// envelope signature covers: the signature is over SignaturePrefix followed
// by every envelope byte before the signature.
const SignaturePrefix = "unibus-envelope-v1\x00"

const (
	flagCleartext = 0x01
	knownFlags    = flagCleartext

	// fixedHeaderLen is the header length without the room id:
	// version, flags, room length, epoch, sender, id, time, nonce.
	fixedHeaderLen = 1 + 1 + 1 + 8 + 32 + 16 + 8 + NonceSize
	maxHeaderLen   = fixedHeaderLen + MaxRoomIDLen
)

var (
	errTruncated     = fmt.Errorf("%w: truncated envelope", ErrMalformed)
	errTrailing      = fmt.Errorf("%w: trailing bytes after envelope", ErrMalformed)
	errEnvVersion    = fmt.Errorf("%w: envelope version is not %d", ErrVersion, EnvelopeVersion)
	errFlags         = fmt.Errorf("%w: unknown envelope flags", ErrMalformed)
	errRoomID        = fmt.Errorf("%w: bad room id", ErrMalformed)
	errEpoch         = fmt.Errorf("%w: epoch is zero", ErrMalformed)
	errClearNonce    = fmt.Errorf("%w: cleartext envelope has a nonce", ErrMalformed)
	errPayloadLen    = fmt.Errorf("%w: bad payload length", ErrMalformed)
	errTooLarge      = fmt.Errorf("%w: plaintext larger than %d bytes", ErrMalformed, MaxPlaintext)
	errSenderKey     = fmt.Errorf("%w: sender key does not match", ErrSignature)
	errBadSignature  = fmt.Errorf("%w: signature does not verify", ErrSignature)
	errEnvDecrypt    = fmt.Errorf("%w: envelope payload does not authenticate", ErrDecrypt)
	errClearWithKey  = fmt.Errorf("%w: cleartext envelope opened with a room key", ErrDecrypt)
	errNoKey         = fmt.Errorf("%w: encrypted envelope opened without a room key", ErrDecrypt)
	errSealClearKey  = fmt.Errorf("%w: room key given for a cleartext envelope", ErrBadKey)
	errSealNoKey     = fmt.Errorf("%w: no room key for an encrypted envelope", ErrBadKey)
	errSignerLen     = fmt.Errorf("%w: bad ed25519 private key length", ErrBadKey)
	errSignerSender  = fmt.Errorf("%w: header sender is not the signing key", ErrBadKey)
	errWrongRoomOpen = fmt.Errorf("%w: envelope is for another room", ErrWrongRoom)
	errWrongEpoch    = fmt.Errorf("%w: envelope is for another epoch", ErrWrongEpoch)
)

// Header is the part of an envelope that precedes the payload. The encoded
// header is the additional data of the payload encryption.
type Header struct {
	// Version is EnvelopeVersion. Seal treats 0 as EnvelopeVersion.
	Version byte
	// Cleartext marks an envelope of a cleartext room: the payload is not
	// encrypted and Nonce is all zero.
	Cleartext bool
	// Room is the room id: 1 to MaxRoomIDLen bytes of [A-Za-z0-9_-].
	Room string
	// Epoch is the room epoch, at least 1.
	Epoch uint64
	// Sender is the sender's Ed25519 public key.
	Sender [ed25519.PublicKeySize]byte
	// ID is the random message id.
	ID [16]byte
	// Time is the send time in Unix nanoseconds.
	Time int64
	// Nonce is the XChaCha20-Poly1305 nonce; all zero in cleartext rooms.
	Nonce [NonceSize]byte
}

// MessageID returns the lowercase hex form of h.ID, 32 characters that are
// safe in URLs and NATS subjects.
func (h *Header) MessageID() string {
	return hex.EncodeToString(h.ID[:])
}

// appendHeader appends the encoded header (version through nonce) to b.
// The room id is written as is; callers validate it.
func (h *Header) appendHeader(b []byte) []byte {
	var flags byte
	if h.Cleartext {
		flags |= flagCleartext
	}
	b = append(b, h.Version, flags, byte(len(h.Room)))
	b = append(b, h.Room...)
	b = binary.BigEndian.AppendUint64(b, h.Epoch)
	b = append(b, h.Sender[:]...)
	b = append(b, h.ID[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(h.Time))
	return append(b, h.Nonce[:]...)
}

// Envelope is a parsed envelope. Create one with [Parse]; do not modify it
// afterwards. Its methods also accept an Envelope built field by field,
// which they encode first.
type Envelope struct {
	Header
	// Payload is the ciphertext (encrypted room) or plaintext (cleartext
	// room).
	Payload []byte
	// Signature is the Ed25519 signature by Sender over SignaturePrefix
	// followed by every envelope byte before the signature.
	Signature [SignatureSize]byte

	// raw is SignaturePrefix followed by the envelope bytes that Parse read.
	// Payload aliases it. It lets Verify and Open work without encoding.
	raw []byte
}

// Seal builds, encrypts and signs an envelope and returns its encoded bytes.
// See [AppendSeal].
func Seal(h Header, key *RoomKey, plaintext []byte, signer ed25519.PrivateKey, rand io.Reader) ([]byte, error) {
	return AppendSeal(nil, h, key, plaintext, signer, rand)
}

// AppendSeal builds an envelope with header h, encrypts plaintext under key
// (XChaCha20-Poly1305, additional data the encoded header), signs it with
// signer and appends the encoded envelope to dst. When dst has room for
// the envelope plus len(SignaturePrefix) bytes, AppendSeal does not allocate
// beyond what the cipher does. plaintext must not overlap dst's spare
// capacity.
//
// Version 0 means EnvelopeVersion. A zero Sender is set to the signer's
// public key; a non-zero Sender must equal it. A zero ID is filled from rand
// (crypto/rand.Reader if nil), then Nonce is filled from rand; its input
// value is ignored. A cleartext header (h.Cleartext) requires a nil key and
// gets an all-zero Nonce; otherwise key must not be nil. plaintext is at most
// MaxPlaintext bytes. On error dst is returned unchanged.
func AppendSeal(dst []byte, h Header, key *RoomKey, plaintext []byte, signer ed25519.PrivateKey, rand io.Reader) ([]byte, error) {
	return AppendSealWith(dst, h, key, plaintext, signer, edsig.Sign, rand)
}

// AppendSealWith is AppendSeal with the Ed25519 signature made by sign
// (AppendSeal's is crypto/ed25519's, computed twice as fast): for a signer
// kept elsewhere, such as in hardware. sign must produce a signature that
// verifies under the envelope rule ([VerifySignature]).
func AppendSealWith(dst []byte, h Header, key *RoomKey, plaintext []byte, signer ed25519.PrivateKey, sign func(ed25519.PrivateKey, []byte) []byte, rand io.Reader) ([]byte, error) {
	switch h.Version {
	case 0:
		h.Version = EnvelopeVersion
	case EnvelopeVersion:
	default:
		return dst, errEnvVersion
	}
	if !ValidRoomID(h.Room) {
		return dst, errRoomID
	}
	if h.Epoch == 0 {
		return dst, errEpoch
	}
	if len(plaintext) > MaxPlaintext {
		return dst, errTooLarge
	}
	if h.Cleartext && key != nil {
		return dst, errSealClearKey
	}
	if !h.Cleartext && key == nil {
		return dst, errSealNoKey
	}
	if len(signer) != ed25519.PrivateKeySize {
		return dst, errSignerLen
	}
	pub := signer[ed25519.SeedSize:]
	if h.Sender == ([ed25519.PublicKeySize]byte{}) {
		copy(h.Sender[:], pub)
	} else if !bytes.Equal(h.Sender[:], pub) {
		return dst, errSignerSender
	}
	h.Nonce = [NonceSize]byte{}

	payloadLen := len(plaintext)
	if !h.Cleartext {
		payloadLen += Overhead
	}
	start := len(dst)
	out := slices.Grow(dst, len(SignaturePrefix)+fixedHeaderLen+len(h.Room)+4+payloadLen+SignatureSize)
	out = append(out, SignaturePrefix...)
	hdrStart := len(out)
	out = h.appendHeader(out)
	hdrEnd := len(out)
	nonceStart := hdrEnd - NonceSize
	idStart := nonceStart - 8 - 16

	zeroID := h.ID == [16]byte{}
	if zeroID || !h.Cleartext {
		r := randReader(rand)
		if zeroID {
			if _, err := io.ReadFull(r, out[idStart:idStart+16]); err != nil {
				return dst, fmt.Errorf("e2ee: read random message id: %w", err)
			}
		}
		if !h.Cleartext {
			if _, err := io.ReadFull(r, out[nonceStart:hdrEnd]); err != nil {
				return dst, fmt.Errorf("e2ee: read random nonce: %w", err)
			}
		}
	}

	out = binary.BigEndian.AppendUint32(out, uint32(payloadLen))
	if h.Cleartext {
		out = append(out, plaintext...)
	} else {
		aead, err := chacha20poly1305.NewX(key[:])
		if err != nil {
			return dst, fmt.Errorf("e2ee: %w", err)
		}
		out = aead.Seal(out, out[nonceStart:hdrEnd], plaintext, out[hdrStart:hdrEnd])
	}
	sig := sign(signer, out[start:])
	out = append(out, sig...)
	// Drop the signature prefix: shift the envelope down over it.
	n := copy(out[start:], out[start+len(SignaturePrefix):])
	return out[:start+n], nil
}

// Parse decodes an envelope, checking its structure only: version, flags,
// exact lengths, room id, epoch, payload size, and no trailing bytes. It
// does not verify the signature or decrypt; use [Envelope.Verify] and
// [Envelope.Open]. Parse copies b; the Envelope does not alias it.
func Parse(b []byte) (*Envelope, error) { return ParseTo(nil, b) }

// ParseTo is Parse copying b into buf's storage when it has room for it
// and the signature prefix (cap(buf) >= len(SignaturePrefix)+len(b)), so
// that a receiver can reuse one buffer per message in flight: the Envelope
// then aliases buf, which must not change while the Envelope is in use.
func ParseTo(buf, b []byte) (*Envelope, error) {
	if len(b) == 0 {
		return nil, errTruncated
	}
	if b[0] != EnvelopeVersion {
		return nil, errEnvVersion
	}
	if len(b) < 3 {
		return nil, errTruncated
	}
	flags := b[1]
	if flags&^knownFlags != 0 {
		return nil, errFlags
	}
	roomLen := int(b[2])
	if roomLen == 0 || roomLen > MaxRoomIDLen {
		return nil, errRoomID
	}
	if len(b) < 3+roomLen {
		return nil, errTruncated
	}
	if !validRoomBytes(b[3 : 3+roomLen]) {
		return nil, errRoomID
	}
	if len(b) < fixedHeaderLen+roomLen+4 {
		return nil, errTruncated
	}
	e := &Envelope{}
	h := &e.Header
	h.Version = b[0]
	h.Cleartext = flags&flagCleartext != 0
	p := 3 + roomLen
	h.Epoch = binary.BigEndian.Uint64(b[p:])
	if h.Epoch == 0 {
		return nil, errEpoch
	}
	p += 8
	p += copy(h.Sender[:], b[p:])
	p += copy(h.ID[:], b[p:])
	h.Time = int64(binary.BigEndian.Uint64(b[p:]))
	p += 8
	p += copy(h.Nonce[:], b[p:])
	if h.Cleartext && h.Nonce != [NonceSize]byte{} {
		return nil, errClearNonce
	}
	n := binary.BigEndian.Uint32(b[p:])
	p += 4
	if h.Cleartext {
		if n > MaxPlaintext {
			return nil, errPayloadLen
		}
	} else if n < Overhead || n > MaxPayload {
		return nil, errPayloadLen
	}
	want := p + int(n) + SignatureSize
	if len(b) < want {
		return nil, errTruncated
	}
	if len(b) > want {
		return nil, errTrailing
	}
	h.Room = string(b[3 : 3+roomLen])
	copy(e.Signature[:], b[want-SignatureSize:])

	var raw []byte
	if need := len(SignaturePrefix) + len(b); cap(buf) >= need {
		raw = buf[:need]
	} else {
		raw = make([]byte, need)
	}
	copy(raw, SignaturePrefix)
	copy(raw[len(SignaturePrefix):], b)
	off := len(SignaturePrefix) + p
	e.Payload = raw[off : off+int(n) : off+int(n)]
	e.raw = raw
	return e, nil
}

// Marshal returns the encoded envelope: for an Envelope from [Parse], the
// bytes that were parsed. Fields are encoded as they are, without checks.
func (e *Envelope) Marshal() []byte {
	if r := e.current(); r != nil {
		return bytes.Clone(r[len(SignaturePrefix):])
	}
	b := make([]byte, 0, EnvelopeOverhead+len(e.Room)+len(e.Payload))
	b = e.appendUnsigned(b)
	return append(b, e.Signature[:]...)
}

// appendUnsigned appends the envelope bytes before the signature to b.
func (e *Envelope) appendUnsigned(b []byte) []byte {
	b = e.Header.appendHeader(b)
	b = binary.BigEndian.AppendUint32(b, uint32(len(e.Payload)))
	return append(b, e.Payload...)
}

// current returns e.raw if it still encodes e's fields, or nil.
func (e *Envelope) current() []byte {
	r := e.raw
	if r == nil || len(e.Room) > MaxRoomIDLen {
		return nil
	}
	w := r[len(SignaturePrefix):]
	var buf [maxHeaderLen]byte
	hdr := e.Header.appendHeader(buf[:0])
	pOff := len(hdr) + 4
	if len(w) != pOff+len(e.Payload)+SignatureSize || !bytes.Equal(hdr, w[:len(hdr)]) {
		return nil
	}
	if len(e.Payload) > 0 && &e.Payload[0] != &w[pOff] {
		return nil
	}
	if !bytes.Equal(e.Signature[:], w[len(w)-SignatureSize:]) {
		return nil
	}
	return r
}

// Verify checks that sender is the envelope's Header.Sender and that the
// signature is valid for it under the envelope rule ([VerifySignature]).
// The receiver passes the Ed25519 key it knows for that member at that
// epoch, not a key taken from the envelope. Errors wrap [ErrSignature].
func (e *Envelope) Verify(sender ed25519.PublicKey) error {
	if len(sender) != ed25519.PublicKeySize || !bytes.Equal(sender, e.Sender[:]) {
		return errSenderKey
	}
	if !VerifySignature(sender, e.SignedMessage(), e.Signature[:]) {
		return errBadSignature
	}
	return nil
}

// SignedMessage returns the bytes the envelope's signature covers:
// [SignaturePrefix] followed by every envelope byte before the signature.
// For an Envelope from [Parse] it is a view of the parsed bytes, not a
// copy: callers must not change it. With [BatchVerifier] a receiver checks
// the signatures of many envelopes at once; it must then also check that
// each Header.Sender is the key it verified with, as Verify does.
func (e *Envelope) SignedMessage() []byte {
	if r := e.current(); r != nil {
		return r[: len(r)-SignatureSize : len(r)-SignatureSize]
	}
	msg := make([]byte, 0, len(SignaturePrefix)+fixedHeaderLen+len(e.Room)+4+len(e.Payload))
	msg = append(msg, SignaturePrefix...)
	return e.appendUnsigned(msg)
}

// Open checks that the envelope is for room and epoch ([ErrWrongRoom],
// [ErrWrongEpoch]) and returns its plaintext. key is the room key of that
// epoch, and nil exactly when the room is cleartext: an envelope whose
// Cleartext flag disagrees with key fails with [ErrDecrypt], as does a
// payload that does not authenticate. Open does not verify the signature;
// callers call [Envelope.Verify] first. The returned slice is newly
// allocated.
func (e *Envelope) Open(room string, epoch uint64, key *RoomKey) ([]byte, error) {
	return e.open(room, epoch, key, false)
}

// OpenInPlace is Open decrypting into the envelope's own copy of the
// payload rather than a new slice, for a receiver that drops the envelope
// once opened: the plaintext aliases the Envelope, which is spent (its
// Payload is then the plaintext, so it no longer verifies or re-encodes as
// received). Verify first.
func (e *Envelope) OpenInPlace(room string, epoch uint64, key *RoomKey) ([]byte, error) {
	pt, err := e.open(room, epoch, key, true)
	if err == nil && !e.Cleartext {
		e.raw, e.Payload = nil, pt
	}
	return pt, err
}

func (e *Envelope) open(room string, epoch uint64, key *RoomKey, inPlace bool) ([]byte, error) {
	if e.Room != room {
		return nil, errWrongRoomOpen
	}
	if e.Epoch != epoch {
		return nil, errWrongEpoch
	}
	if e.Version != EnvelopeVersion {
		return nil, errEnvVersion
	}
	if e.Cleartext {
		if key != nil {
			return nil, errClearWithKey
		}
		if inPlace {
			return e.Payload, nil
		}
		return bytes.Clone(e.Payload), nil
	}
	if key == nil {
		return nil, errNoKey
	}
	var aad []byte
	if r := e.current(); r != nil {
		aad = r[len(SignaturePrefix) : len(SignaturePrefix)+fixedHeaderLen+len(e.Room)]
	} else {
		aad = e.Header.appendHeader(make([]byte, 0, fixedHeaderLen+len(e.Room)))
	}
	aead, err := chacha20poly1305.NewX(key[:])
	if err != nil {
		return nil, fmt.Errorf("e2ee: %w", err)
	}
	var dst []byte
	if inPlace {
		// The AAD is read before the payload is overwritten: it lies
		// before it in the same buffer, and the AEAD reads it first.
		dst = e.Payload[:0]
	}
	pt, err := aead.Open(dst, e.Nonce[:], e.Payload, aad)
	if err != nil {
		return nil, errEnvDecrypt
	}
	if pt == nil {
		pt = []byte{}
	}
	return pt, nil
}
