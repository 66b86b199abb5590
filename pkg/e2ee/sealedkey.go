package e2ee

import (
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"

	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/crypto/curve25519"
)

// Sealed room key format constants. See docs/envelope.md.
const (
	// SealedKeyVersion is the version byte of a sealed room key.
	SealedKeyVersion = 1
	// SealedKeySize is the size of a sealed room key: version, nonce, and
	// the encrypted room key with its tag.
	SealedKeySize = 1 + NonceSize + KeySize + Overhead
	// SealInfo is the HKDF info prefix of the sealed-key scheme; the sealer's
	// and then the recipient's X25519 public keys follow it.
	SealInfo = "unibus-seal-v1"
)

const maxSealAADLen = MaxRoomIDLen + 1 + 8 + 32

var (
	errLowOrder      = fmt.Errorf("%w: x25519 shared secret is zero (low-order public key)", ErrBadKey)
	errSealedLen     = fmt.Errorf("%w: sealed room key has the wrong length", ErrMalformed)
	errSealedVersion = fmt.Errorf("%w: sealed room key version is not %d", ErrVersion, SealedKeyVersion)
	errSealedDecrypt = fmt.Errorf("%w: sealed room key does not authenticate", ErrDecrypt)
)

// SealedKeyContext is what a sealed room key is bound to: the room, the
// epoch, and the recipient's Ed25519 user key. Opening with any other
// context fails with [ErrDecrypt].
type SealedKeyContext struct {
	// Room is the room id.
	Room string
	// Epoch is the epoch the room key belongs to, at least 1.
	Epoch uint64
	// Recipient is the recipient's Ed25519 user public key.
	Recipient [32]byte
}

func (c *SealedKeyContext) check() error {
	if !ValidRoomID(c.Room) {
		return errRoomID
	}
	if c.Epoch == 0 {
		return errEpoch
	}
	return nil
}

// appendAAD appends room || 0x00 || epoch (8 bytes big-endian) || recipient.
func (c *SealedKeyContext) appendAAD(b []byte) []byte {
	b = append(b, c.Room...)
	b = append(b, 0)
	b = binary.BigEndian.AppendUint64(b, c.Epoch)
	return append(b, c.Recipient[:]...)
}

// PairKey is the derived key of one (sealer, recipient) direction,
// computed once so that sealing or opening many room keys for the same
// pair skips the X25519 and HKDF steps. The sealing side's PairKey from
// [NewSealingPairKey] and the recipient's from [NewOpeningPairKey] hold the
// same key. A PairKey is immutable and safe for concurrent use; the zero
// PairKey is not usable.
type PairKey struct {
	aead cipher.AEAD
}

// XKeyPair is an X25519 private key and its public key. Made once
// ([NewXKeyPair]), it spares each pair key the scalar multiplication that
// derives the public key from the private one: about half the cost of a
// pair key.
type XKeyPair struct {
	Private, Public [32]byte
}

// NewXKeyPair returns priv with its public key.
func NewXKeyPair(priv [32]byte) XKeyPair { return XKeyPair{Private: priv, Public: XPublic(priv)} }

// SealingPairKey derives the pair key with which k seals room keys to the
// holder of the X25519 public key recipientPub. It fails with [ErrBadKey]
// if recipientPub is of low order.
func (k XKeyPair) SealingPairKey(recipientPub [32]byte) (*PairKey, error) {
	shared, err := curve25519.X25519(k.Private[:], recipientPub[:])
	if err != nil {
		return nil, errLowOrder
	}
	return newPairKey(shared, k.Public, recipientPub)
}

// OpeningPairKey derives the pair key with which k opens room keys sealed
// by the holder of the X25519 public key sealerPub. It fails with
// [ErrBadKey] if sealerPub is of low order.
func (k XKeyPair) OpeningPairKey(sealerPub [32]byte) (*PairKey, error) {
	shared, err := curve25519.X25519(k.Private[:], sealerPub[:])
	if err != nil {
		return nil, errLowOrder
	}
	return newPairKey(shared, sealerPub, k.Public)
}

// NewSealingPairKey derives the pair key with which the holder of
// sealerPriv seals room keys to the holder of the X25519 public key
// recipientPub. It fails with [ErrBadKey] if recipientPub is of low order.
// A sealer making many should use [XKeyPair.SealingPairKey].
func NewSealingPairKey(sealerPriv, recipientPub [32]byte) (*PairKey, error) {
	return NewXKeyPair(sealerPriv).SealingPairKey(recipientPub)
}

// NewOpeningPairKey derives the pair key with which the holder of
// recipientPriv opens room keys sealed by the holder of the X25519 public
// key sealerPub. It fails with [ErrBadKey] if sealerPub is of low order.
func NewOpeningPairKey(recipientPriv, sealerPub [32]byte) (*PairKey, error) {
	return NewXKeyPair(recipientPriv).OpeningPairKey(sealerPub)
}

func newPairKey(shared []byte, sealerPub, recipientPub [32]byte) (*PairKey, error) {
	var info [len(SealInfo) + 64]byte
	copy(info[:], SealInfo)
	copy(info[len(SealInfo):], sealerPub[:])
	copy(info[len(SealInfo)+32:], recipientPub[:])
	k, err := hkdf.Key(sha256.New, shared, nil, string(info[:]), KeySize)
	if err != nil {
		return nil, fmt.Errorf("e2ee: derive pair key: %w", err)
	}
	aead, err := chacha20poly1305.NewX(k)
	if err != nil {
		return nil, fmt.Errorf("e2ee: %w", err)
	}
	return &PairKey{aead: aead}, nil
}

// Seal seals key for the context c with a nonce read from rand
// (crypto/rand.Reader if nil) and returns the [SealedKeySize]-byte sealed
// form. It fails with [ErrMalformed] if c has a bad room id or a zero epoch.
func (p *PairKey) Seal(key RoomKey, c SealedKeyContext, rand io.Reader) ([]byte, error) {
	if err := c.check(); err != nil {
		return nil, err
	}
	// One allocation: the sealed form, followed in its spare capacity by
	// the additional data.
	buf := make([]byte, SealedKeySize, SealedKeySize+maxSealAADLen)
	buf[0] = SealedKeyVersion
	nonce := buf[1 : 1+NonceSize]
	if _, err := io.ReadFull(randReader(rand), nonce); err != nil {
		return nil, fmt.Errorf("e2ee: read random nonce: %w", err)
	}
	aad := c.appendAAD(buf[SealedKeySize:SealedKeySize])
	pt := buf[1+NonceSize : 1+NonceSize+KeySize]
	copy(pt, key[:])
	p.aead.Seal(pt[:0], nonce, pt, aad)
	return buf[:SealedKeySize:SealedKeySize], nil
}

// Open opens a sealed room key for the context c. It fails with
// [ErrMalformed] for a sealed form of the wrong length or a bad context,
// [ErrVersion] for an unknown version, and [ErrDecrypt] if the sealed key
// was tampered with, sealed by or for someone else, or sealed for another
// context.
func (p *PairKey) Open(sealed []byte, c SealedKeyContext) (RoomKey, error) {
	if err := c.check(); err != nil {
		return RoomKey{}, err
	}
	if len(sealed) > 0 && sealed[0] != SealedKeyVersion {
		return RoomKey{}, errSealedVersion
	}
	if len(sealed) != SealedKeySize {
		return RoomKey{}, errSealedLen
	}
	buf := make([]byte, KeySize, KeySize+maxSealAADLen)
	aad := c.appendAAD(buf[KeySize:KeySize])
	pt, err := p.aead.Open(buf[:0], sealed[1:1+NonceSize], sealed[1+NonceSize:], aad)
	if err != nil {
		return RoomKey{}, errSealedDecrypt
	}
	var k RoomKey
	copy(k[:], pt)
	clear(pt)
	return k, nil
}

// SealRoomKey seals key from the holder of sealerPriv to the holder of the
// X25519 public key recipientPub for the context c. It is
// [NewSealingPairKey] followed by [PairKey.Seal].
func SealRoomKey(key RoomKey, c SealedKeyContext, sealerPriv, recipientPub [32]byte, rand io.Reader) ([]byte, error) {
	p, err := NewSealingPairKey(sealerPriv, recipientPub)
	if err != nil {
		return nil, err
	}
	return p.Seal(key, c, rand)
}

// OpenRoomKey opens a room key sealed to the holder of recipientPriv by the
// holder of the X25519 public key sealerPub for the context c. It is
// [NewOpeningPairKey] followed by [PairKey.Open].
func OpenRoomKey(sealed []byte, c SealedKeyContext, recipientPriv, sealerPub [32]byte) (RoomKey, error) {
	p, err := NewOpeningPairKey(recipientPriv, sealerPub)
	if err != nil {
		return RoomKey{}, err
	}
	return p.Open(sealed, c)
}

// XPublic returns the X25519 public key of the private key priv: priv
// times the base point.
func XPublic(priv [32]byte) [32]byte {
	var pub [32]byte
	curve25519.ScalarBaseMult(&pub, &priv)
	return pub
}
