package e2ee_test

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/enmanuel/unibus/pkg/e2ee"
)

func FuzzParseEnvelope(f *testing.F) {
	vf := loadVectors(f)
	for _, v := range vf.Envelope {
		f.Add(unhex(v.Envelope))
	}
	f.Add([]byte{})
	f.Add([]byte{1, 1, 1, 'a'})
	key := e2ee.RoomKey(stream32("room key general"))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := e2ee.Parse(b)
		if err != nil {
			if !errors.Is(err, e2ee.ErrMalformed) && !errors.Is(err, e2ee.ErrVersion) {
				t.Fatalf("untyped Parse error: %v", err)
			}
			if e != nil {
				t.Fatal("envelope returned with an error")
			}
			return
		}
		if !bytes.Equal(e.Marshal(), b) {
			t.Fatalf("Marshal(Parse(b)) != b\n b: %x\n m: %x", b, e.Marshal())
		}
		if !e2ee.ValidRoomID(e.Room) || e.Epoch == 0 || e.Version != e2ee.EnvelopeVersion {
			t.Fatalf("Parse accepted bad fields: %+v", e.Header)
		}
		if err := e.Verify(e.Sender[:]); err != nil && !errors.Is(err, e2ee.ErrSignature) {
			t.Fatalf("untyped Verify error: %v", err)
		}
		for _, k := range []*e2ee.RoomKey{nil, &key} {
			pt, err := e.Open(e.Room, e.Epoch, k)
			if err != nil {
				if !errors.Is(err, e2ee.ErrDecrypt) {
					t.Fatalf("untyped Open error: %v", err)
				}
				if pt != nil {
					t.Fatal("plaintext returned with an error")
				}
			}
		}
		_, err = e.Open(e.Room+"x", e.Epoch, &key)
		if !errors.Is(err, e2ee.ErrWrongRoom) {
			t.Fatalf("Open with another room: %v", err)
		}
	})
}

func FuzzOpenRoomKey(f *testing.F) {
	vf := loadVectors(f)
	for _, v := range vf.SealedKey {
		f.Add(unhex(v.Sealed), v.Room, v.Epoch)
	}
	f.Add([]byte{1}, "general", uint64(1))
	alice, bob := newMember("alice"), newMember("bob")
	p, err := e2ee.NewOpeningPairKey(bob.xpriv, alice.xpub)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, sealed []byte, room string, epoch uint64) {
		c := e2ee.SealedKeyContext{Room: room, Epoch: epoch, Recipient: bob.user}
		key, err := p.Open(sealed, c)
		if err != nil {
			if !errors.Is(err, e2ee.ErrMalformed) && !errors.Is(err, e2ee.ErrVersion) && !errors.Is(err, e2ee.ErrDecrypt) {
				t.Fatalf("untyped error: %v", err)
			}
			if key != (e2ee.RoomKey{}) {
				t.Fatal("key returned with an error")
			}
			return
		}
		// Only a genuine sealed key opens: re-sealing with its nonce
		// must give the same bytes.
		sp, _ := e2ee.NewSealingPairKey(alice.xpriv, bob.xpub)
		again, err := sp.Seal(key, c, bytes.NewReader(sealed[1:25]))
		if err != nil || !bytes.Equal(again, sealed) {
			t.Fatalf("opened a sealed key that does not re-seal: %v", err)
		}
	})
}

func FuzzFileDecrypter(f *testing.F) {
	key := e2ee.FileKey(stream32("fuzz file key"))
	for _, pt := range []string{"", "a", "hello, file\n"} {
		ct := encryptFile(f, []byte(pt), key)
		f.Add(ct)
		f.Add(ct[:len(ct)-1])
		f.Add(append(ct, 0))
	}
	f.Add([]byte(e2ee.FileMagic))
	f.Add([]byte("unibus-file-v2\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		// data as a ciphertext.
		d, err := e2ee.NewFileDecrypter(bytes.NewReader(data), key)
		var pt []byte
		if err == nil {
			pt, err = io.ReadAll(d)
		}
		if err != nil {
			if !errors.Is(err, e2ee.ErrMalformed) && !errors.Is(err, e2ee.ErrVersion) && !errors.Is(err, e2ee.ErrDecrypt) {
				t.Fatalf("untyped error: %v", err)
			}
		} else if !bytes.Equal(encryptFile(t, pt, key), data) {
			// Each plaintext has exactly one encryption under a key.
			t.Fatal("decrypted a stream that is not the encryption of its plaintext")
		}
		// data as a plaintext.
		ct := encryptFile(t, data, key)
		if int64(len(ct)) != e2ee.EncryptedFileSize(int64(len(data))) {
			t.Fatal("EncryptedFileSize differs")
		}
		got, err := decryptFile(ct, key)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("round trip: %v", err)
		}
	})
}
