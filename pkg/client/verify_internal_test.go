package client

import (
	"crypto/ed25519"
	"crypto/rand"
	"math/big"
	"testing"

	"github.com/enmanuel/unibus/pkg/e2ee"
)

// TestFastVerifierAgreesWithStdlib: on what a correct signer makes, on a
// damaged signature and on a malleated copy whose S is not reduced (S +
// L), the receive path's verifier (ZIP-215, expanded key) and
// crypto/ed25519 agree. (They differ only on signatures crafted with a
// small-order component; pkg/e2ee tests that case.)
func TestFastVerifierAgreesWithStdlib(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	k := e2ee.NewSenderKey(pub)
	l, _ := new(big.Int).SetString("7237005577332262213973186563042994240857116359379907606001950938285454250989", 10)
	for i := range 200 {
		msg := make([]byte, i*7)
		rand.Read(msg)
		sig := ed25519.Sign(priv, msg)
		cases := map[string][]byte{"genuine": sig}
		flipped := append([]byte(nil), sig...)
		flipped[i%64] ^= 1 << (i % 8)
		cases["flipped"] = flipped
		// S + L: the same signature, not in canonical form.
		s := new(big.Int).SetBytes(reverse(sig[32:]))
		s.Add(s, l)
		if sb := s.Bytes(); len(sb) <= 32 {
			mal := append([]byte(nil), sig[:32]...)
			mal = append(mal, reverse(leftPad(sb, 32))...)
			cases["malleated"] = mal
		}
		for name, sg := range cases {
			if got, want := k.Verify(msg, sg), ed25519.Verify(pub, msg, sg); got != want {
				t.Fatalf("%s signature %d: fast verifier %v, stdlib %v", name, i, got, want)
			}
		}
	}
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

// TestFastSignerMatchesStdlib: Ed25519 is deterministic, so the faster
// signer must produce the standard library's bytes exactly.
func TestFastSignerMatchesStdlib(t *testing.T) {
	for i := range 100 {
		_, priv, _ := ed25519.GenerateKey(rand.Reader)
		msg := make([]byte, i*13)
		rand.Read(msg)
		if got, want := fastSign(priv, msg), ed25519.Sign(priv, msg); string(got) != string(want) {
			t.Fatalf("message %d: fast signature differs from crypto/ed25519's", i)
		}
	}
}
