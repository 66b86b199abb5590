// Package e2ee implements the end-to-end encryption formats of unibus: the
// signed message envelope, room keys sealed to a member's X25519 key, and
// the chunked stream format for encrypted files.
//
// The byte-level specification of every format lives in docs/envelope.md;
// the test vectors in testdata/envelope_vectors.json pin it down.
//
// # Envelope
//
// Every message on the bus is an [Envelope]: a fixed binary header naming the
// room, epoch, sender, message id, time and nonce, then the payload, then an
// Ed25519 signature by the sender over the domain-separation prefix
// "unibus-envelope-v1\x00" followed by every byte before the signature. In an
// encrypted room the payload is XChaCha20-Poly1305 ciphertext under the
// epoch's [RoomKey] with the encoded header as additional data; in a
// cleartext room the payload is the plaintext and the nonce is all zero.
//
// [Seal] and [AppendSeal] build envelopes. A receiver calls [Parse], then
// [Envelope.Verify] with the sender key it knows for that member at that
// epoch, then [Envelope.Open] with the room and epoch the message was read
// from. Anything that fails any step must not be shown. Signatures verify
// under the ZIP-215 rules ([VerifySignature]), so that a receiver may check
// many at once with a [BatchVerifier] and accept exactly what a receiver
// checking one at a time accepts; a [SenderKey] keeps a member's key ready
// for verification.
//
// # Sealed room keys
//
// Each epoch's random [RoomKey] is sealed by one member (the sealer) to every
// other member (the recipient) with [SealRoomKey]: X25519 between the
// sealer's private and the recipient's public key, HKDF-SHA256 bound to both
// public keys, and XChaCha20-Poly1305 with the room, epoch and recipient's
// Ed25519 user key as additional data. A [PairKey] holds the derived key for
// one (sealer, recipient) direction so that the X25519 step can be done once.
//
// # File streams
//
// Files are encrypted with a fresh random [FileKey] by [EncryptFile] into a
// STREAM of ChaCha20-Poly1305 chunks of [FileChunkSize] plaintext bytes each,
// with a counter-and-last-flag nonce, so that truncation, reordering,
// extension and tampering are all detected. Encryption is deterministic for
// a given key, so a client may hash the ciphertext in one pass and upload it
// in a second. [NewFileDecrypter] streams the plaintext back and never
// returns bytes of a chunk that has not been authenticated.
//
// # Concurrency
//
// All functions and methods are safe for concurrent use. Values of the types
// in this package are immutable after creation: an [Envelope] returned by
// [Parse] and a [PairKey] may be shared between goroutines as long as no one
// writes to their fields. Randomness is always injected as an [io.Reader];
// a nil reader means crypto/rand.Reader.
package e2ee
