package e2ee

import (
	"crypto/rand"
	"fmt"
	"io"
)

// KeySize is the size in bytes of room keys and file keys.
const KeySize = 32

// RoomKey is the symmetric key of one epoch of an encrypted room.
type RoomKey [KeySize]byte

// NewRoomKey returns a room key read from rand (crypto/rand.Reader if nil).
func NewRoomKey(rand io.Reader) (RoomKey, error) {
	var k RoomKey
	if _, err := io.ReadFull(randReader(rand), k[:]); err != nil {
		return RoomKey{}, fmt.Errorf("e2ee: read random room key: %w", err)
	}
	return k, nil
}

// randReader returns r, or crypto/rand.Reader if r is nil.
func randReader(r io.Reader) io.Reader {
	if r == nil {
		return rand.Reader
	}
	return r
}

// ValidRoomID reports whether room is a valid room id: 1 to [MaxRoomIDLen]
// bytes, each an ASCII letter, digit, '_' or '-'.
func ValidRoomID(room string) bool {
	if len(room) == 0 || len(room) > MaxRoomIDLen {
		return false
	}
	for i := 0; i < len(room); i++ {
		if !roomByte(room[i]) {
			return false
		}
	}
	return true
}

func validRoomBytes(room []byte) bool {
	if len(room) == 0 || len(room) > MaxRoomIDLen {
		return false
	}
	for _, c := range room {
		if !roomByte(c) {
			return false
		}
	}
	return true
}

func roomByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-'
}
