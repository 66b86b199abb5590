package e2ee_test

import (
	"crypto/ed25519"
	"crypto/sha512"
	"fmt"
	"testing"

	"github.com/oasisprotocol/curve25519-voi/curve"
	"github.com/oasisprotocol/curve25519-voi/curve/scalar"

	"github.com/enmanuel/unibus/pkg/e2ee"
)

// torsionSign signs msg as Ed25519 does, except that the commitment R
// carries a small-order component (the point of order 2): the signature
// passes the cofactored check of ZIP-215 and fails crypto/ed25519's
// cofactorless one. Only the key's holder can make one.
func torsionSign(tb testing.TB) func(ed25519.PrivateKey, []byte) []byte {
	return func(priv ed25519.PrivateKey, msg []byte) []byte {
		h := sha512.Sum512(priv.Seed())
		h[0] &= 248
		h[31] &= 127
		h[31] |= 64
		var a scalar.Scalar
		if _, err := a.SetBits(h[:32]); err != nil {
			tb.Fatal(err)
		}
		rh := sha512.Sum512(append(h[32:], msg...))
		var r scalar.Scalar
		if _, err := r.SetBytesModOrderWide(rh[:]); err != nil {
			tb.Fatal(err)
		}
		var order2 curve.CompressedEdwardsY
		order2[0] = 0xec
		for i := 1; i < 31; i++ {
			order2[i] = 0xff
		}
		order2[31] = 0x7f // y = -1: the point of order 2
		var T, R curve.EdwardsPoint
		if _, err := T.SetCompressedY(&order2); err != nil {
			tb.Fatal(err)
		}
		R.MulBasepoint(curve.ED25519_BASEPOINT_TABLE, &r)
		R.Add(&R, &T)
		var Rc curve.CompressedEdwardsY
		Rc.SetEdwardsPoint(&R)
		kh := sha512.New()
		kh.Write(Rc[:])
		kh.Write(priv.Public().(ed25519.PublicKey))
		kh.Write(msg)
		var k, s scalar.Scalar
		if _, err := k.SetBytesModOrderWide(kh.Sum(nil)); err != nil {
			tb.Fatal(err)
		}
		s.Mul(&k, &a)
		s.Add(&s, &r)
		sig := make([]byte, 64)
		copy(sig, Rc[:])
		if err := s.ToBytes(sig[32:]); err != nil {
			tb.Fatal(err)
		}
		return sig
	}
}

func parseEnv(tb testing.TB, b []byte) *e2ee.Envelope {
	tb.Helper()
	env, err := e2ee.Parse(b)
	if err != nil {
		tb.Fatal(err)
	}
	return env
}

func TestEnvelopeSignatureRuleIsZIP215(t *testing.T) {
	fx := newFixture()
	pub := fx.alice.Public().(ed25519.PublicKey)
	honest := parseEnv(t, fx.mustSeal(t, false, []byte("hello")))
	crafted, err := e2ee.AppendSealWith(nil, testHeader("general", 1, false), &fx.key, []byte("hello"), fx.alice, torsionSign(t), newStream("nonce"))
	if err != nil {
		t.Fatal(err)
	}
	torsion := parseEnv(t, crafted)

	// Every verifier unibus uses agrees on both, one at a time or batched.
	for _, c := range []struct {
		name string
		env  *e2ee.Envelope
	}{{"honest", honest}, {"small-order R", torsion}} {
		msg, sig := c.env.SignedMessage(), c.env.Signature[:]
		single := e2ee.VerifySignature(pub, msg, sig)
		expanded := e2ee.NewSenderKey(pub).Verify(msg, sig)
		b := e2ee.NewBatchVerifier()
		for range 3 {
			b.Add(e2ee.NewSenderKey(pub), msg, sig)
		}
		batch := b.Verify(nil)
		if !single || !expanded || !batch[0] || !batch[1] || !batch[2] {
			t.Errorf("%s: single %v, expanded %v, batch %v: want all true", c.name, single, expanded, batch)
		}
		if err := c.env.Verify(pub); err != nil {
			t.Errorf("%s: Envelope.Verify: %v", c.name, err)
		}
	}
	// The one difference from crypto/ed25519, documented in envelope.md.
	if !ed25519.Verify(pub, honest.SignedMessage(), honest.Signature[:]) {
		t.Error("crypto/ed25519 refuses an honest envelope signature")
	}
	if ed25519.Verify(pub, torsion.SignedMessage(), torsion.Signature[:]) {
		t.Error("crypto/ed25519 accepts the small-order R signature: the crafted case is not the one documented")
	}
}

func TestBatchVerifierFindsTheBadSignatures(t *testing.T) {
	fx := newFixture()
	alice := e2ee.NewSenderKey(fx.alice.Public().(ed25519.PublicKey))
	mallory := e2ee.NewSenderKey(fx.mallory.Public().(ed25519.PublicKey))
	var envs []*e2ee.Envelope
	for i := range 40 {
		envs = append(envs, parseEnv(t, fx.mustSeal(t, false, fmt.Appendf(nil, "message %d", i))))
	}
	zeros := e2ee.NewSenderKey(make(ed25519.PublicKey, 32))
	short := e2ee.NewSenderKey(ed25519.PublicKey{1, 2, 3}) // not a key: never expanded
	b := e2ee.NewBatchVerifier()
	for round := range 2 { // the second round reuses the verifier after Reset
		b.Reset()
		want := make([]bool, len(envs))
		for i, env := range envs {
			key, msg, sig := alice, env.SignedMessage(), env.Signature[:]
			want[i] = true
			switch {
			case i == 7:
				key, want[i] = mallory, false // someone else's key
			case i == 20+round:
				flipped := append([]byte(nil), sig...)
				flipped[40] ^= 1
				sig, want[i] = flipped, false
			case i == 30:
				sig, want[i] = sig[:63], false
			case i == 33:
				key, want[i] = zeros, false
			case i == 34:
				key, want[i] = short, false
			}
			b.Add(key, msg, sig)
		}
		if b.Len() != len(envs) {
			t.Fatalf("Len %d, want %d", b.Len(), len(envs))
		}
		got := b.Verify(nil)
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("round %d entry %d: valid %v, want %v", round, i, got[i], want[i])
			}
		}
	}
	// A batch of one, and of one good entry among bad ones.
	b.Reset()
	b.Add(alice, envs[0].SignedMessage(), envs[0].Signature[:])
	if got := b.Verify(nil); len(got) != 1 || !got[0] {
		t.Errorf("batch of one: %v", got)
	}
	b.Reset()
	b.Add(mallory, envs[0].SignedMessage(), envs[0].Signature[:])
	b.Add(alice, envs[1].SignedMessage(), envs[1].Signature[:])
	if got := b.Verify(nil); got[0] || !got[1] {
		t.Errorf("one bad, one good: %v", got)
	}
}

func BenchmarkVerifySignature(b *testing.B) {
	fx := newFixture()
	env := parseEnv(b, fx.mustSeal(b, false, make([]byte, 1024)))
	key := e2ee.NewSenderKey(fx.alice.Public().(ed25519.PublicKey))
	msg, sig := env.SignedMessage(), env.Signature[:]
	b.Run("crypto-ed25519", func(b *testing.B) {
		for b.Loop() {
			ed25519.Verify(key.Public(), msg, sig)
		}
	})
	b.Run("expanded", func(b *testing.B) {
		for b.Loop() {
			key.Verify(msg, sig)
		}
	})
	for _, n := range []int{8, 32, 64} {
		b.Run(fmt.Sprintf("batch%d", n), func(b *testing.B) {
			bv := e2ee.NewBatchVerifier()
			for b.Loop() {
				bv.Reset()
				for range n {
					bv.Add(key, msg, sig)
				}
				bv.Verify(nil)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/sig")
		})
	}
}
