package edsig

import (
	"crypto/ed25519"
	"crypto/rand"
	"math/big"
	"testing"
)

// TestVerifyAgreesWithStdlib: on genuine signatures, damaged ones, a
// malleated copy whose S is not reduced (S + L), other keys and keys that
// are not curve points, Verify and crypto/ed25519.Verify agree.
func TestVerifyAgreesWithStdlib(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	other, _, _ := ed25519.GenerateKey(rand.Reader)
	l, _ := new(big.Int).SetString("7237005577332262213973186563042994240857116359379907606001950938285454250989", 10)
	for i := range 200 {
		msg := make([]byte, i*7)
		rand.Read(msg)
		sig := ed25519.Sign(priv, msg)
		cases := map[string][]byte{"genuine": sig}
		flipped := append([]byte(nil), sig...)
		flipped[i%64] ^= 1 << (i % 8)
		cases["flipped"] = flipped
		s := new(big.Int).SetBytes(reverse(sig[32:]))
		s.Add(s, l)
		if sb := s.Bytes(); len(sb) <= 32 {
			mal := append([]byte(nil), sig[:32]...)
			mal = append(mal, reverse(leftPad(sb, 32))...)
			cases["malleated"] = mal
		}
		cases["short"] = sig[:63]
		for name, sg := range cases {
			for kname, k := range map[string]ed25519.PublicKey{"signer": pub, "other": other, "all ones": bytesOf(0xff, 32), "short": pub[:31]} {
				got := Verify(k, msg, sg)
				want := len(k) == ed25519.PublicKeySize && ed25519.Verify(k, msg, sg)
				if got != want {
					t.Fatalf("%s signature %d under the %s key: Verify %v, crypto/ed25519 %v", name, i, kname, got, want)
				}
			}
		}
	}
}

// TestSignMatchesStdlib: Ed25519 is deterministic, so Sign must produce
// the standard library's bytes exactly.
func TestSignMatchesStdlib(t *testing.T) {
	for i := range 100 {
		_, priv, _ := ed25519.GenerateKey(rand.Reader)
		msg := make([]byte, i*13)
		rand.Read(msg)
		if got, want := Sign(priv, msg), ed25519.Sign(priv, msg); string(got) != string(want) {
			t.Fatalf("message %d: signature differs from crypto/ed25519's", i)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	msg := make([]byte, 256)
	sig := ed25519.Sign(priv, msg)
	b.Run("crypto-ed25519", func(b *testing.B) {
		for b.Loop() {
			ed25519.Verify(pub, msg, sig)
		}
	})
	b.Run("edsig", func(b *testing.B) {
		for b.Loop() {
			Verify(pub, msg, sig)
		}
	})
}

func BenchmarkSign(b *testing.B) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	msg := make([]byte, 256)
	b.Run("crypto-ed25519", func(b *testing.B) {
		for b.Loop() {
			ed25519.Sign(priv, msg)
		}
	})
	b.Run("edsig", func(b *testing.B) {
		for b.Loop() {
			Sign(priv, msg)
		}
	})
}

func reverse(b []byte) []byte {
	out := make([]byte, len(b))
	for i := range b {
		out[len(b)-1-i] = b[i]
	}
	return out
}

func leftPad(b []byte, n int) []byte {
	return append(make([]byte, n-len(b)), b...)
}

func bytesOf(v byte, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = v
	}
	return b
}
