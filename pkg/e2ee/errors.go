package e2ee

import "errors"

// Errors returned by this package. Returned errors wrap one of these, with
// detail appended, and are tested with [errors.Is].
var (
	// ErrMalformed reports input that does not follow the format: truncated,
	// trailing bytes, a bad length, or a field with a forbidden value.
	ErrMalformed = errors.New("e2ee: malformed")
	// ErrVersion reports an unknown format version.
	ErrVersion = errors.New("e2ee: unknown version")
	// ErrSignature reports an envelope whose signature is invalid or whose
	// sender is not the expected key.
	ErrSignature = errors.New("e2ee: bad signature")
	// ErrDecrypt reports ciphertext that fails authentication: tampered or
	// truncated data, or the wrong key.
	ErrDecrypt = errors.New("e2ee: decryption failed")
	// ErrWrongRoom reports an envelope for another room than the one it was
	// opened for.
	ErrWrongRoom = errors.New("e2ee: wrong room")
	// ErrWrongEpoch reports an envelope for another epoch than the one it was
	// opened for.
	ErrWrongEpoch = errors.New("e2ee: wrong epoch")
	// ErrBadKey reports a key that cannot be used, such as an X25519 public
	// key of low order or an Ed25519 key of the wrong length.
	ErrBadKey = errors.New("e2ee: bad key")
)
