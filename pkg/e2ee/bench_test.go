package e2ee_test

import (
	"bytes"
	"io"
	"strconv"
	"testing"

	"github.com/enmanuel/unibus/pkg/e2ee"
)

var benchSizes = []int{64, 1 << 10, 16 << 10}

func sizeName(n int) string {
	if n >= 1<<10 {
		return strconv.Itoa(n>>10) + "KiB"
	}
	return strconv.Itoa(n) + "B"
}

// BenchmarkSeal measures Seal (a new buffer per message) and AppendSeal
// (a reused buffer) with crypto/rand nonces.
func BenchmarkSeal(b *testing.B) {
	fx := newFixture()
	h := testHeader("general", 1, false)
	for _, size := range benchSizes {
		pt := streamBytes("bench", size)
		b.Run(sizeName(size), func(b *testing.B) {
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := e2ee.Seal(h, &fx.key, pt, fx.alice, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("append/"+sizeName(size), func(b *testing.B) {
			b.SetBytes(int64(size))
			b.ReportAllocs()
			buf := make([]byte, 0, size+1024)
			for b.Loop() {
				var err error
				if buf, err = e2ee.AppendSeal(buf[:0], h, &fx.key, pt, fx.alice, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkOpen measures the receiver path: Parse, Verify and Open.
func BenchmarkOpen(b *testing.B) {
	fx := newFixture()
	alice := pubOf(fx.alice)
	for _, size := range benchSizes {
		env := fx.mustSeal(b, false, streamBytes("bench", size))
		b.Run(sizeName(size), func(b *testing.B) {
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := receive(env, alice, "general", 1, &fx.key); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkSealRoomKey(b *testing.B) {
	alice, bob := newMember("alice"), newMember("bob")
	key := e2ee.RoomKey(stream32("room key"))
	c := e2ee.SealedKeyContext{Room: "general", Epoch: 1, Recipient: bob.user}
	b.Run("precomputed", func(b *testing.B) {
		p, err := e2ee.NewSealingPairKey(alice.xpriv, bob.xpub)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := p.Seal(key, c, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("fresh", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := e2ee.SealRoomKey(key, c, alice.xpriv, bob.xpub, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkOpenRoomKey(b *testing.B) {
	alice, bob := newMember("alice"), newMember("bob")
	c := e2ee.SealedKeyContext{Room: "general", Epoch: 1, Recipient: bob.user}
	sealed, err := e2ee.SealRoomKey(e2ee.RoomKey{1}, c, alice.xpriv, bob.xpub, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("precomputed", func(b *testing.B) {
		p, _ := e2ee.NewOpeningPairKey(bob.xpriv, alice.xpub)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := p.Open(sealed, c); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("fresh", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := e2ee.OpenRoomKey(sealed, c, bob.xpriv, alice.xpub); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkEncryptFile(b *testing.B) {
	key := e2ee.FileKey(stream32("bench file"))
	pt := streamBytes("bench file", 4<<20)
	r := bytes.NewReader(pt)
	b.SetBytes(int64(len(pt)))
	b.ReportAllocs()
	for b.Loop() {
		r.Reset(pt)
		if _, err := e2ee.EncryptFile(io.Discard, r, key); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecryptFile(b *testing.B) {
	key := e2ee.FileKey(stream32("bench file"))
	pt := streamBytes("bench file", 4<<20)
	ct := encryptFile(b, pt, key)
	r := bytes.NewReader(ct)
	b.SetBytes(int64(len(pt)))
	b.ReportAllocs()
	for b.Loop() {
		r.Reset(ct)
		d, err := e2ee.NewFileDecrypter(r, key)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, d); err != nil {
			b.Fatal(err)
		}
	}
}
