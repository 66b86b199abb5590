package e2ee_test

import (
	"bytes"
	"sync"
	"testing"

	"github.com/enmanuel/unibus/pkg/e2ee"
)

// TestConcurrentUse shares one Envelope and one PairKey between goroutines;
// run with -race.
func TestConcurrentUse(t *testing.T) {
	fx := newFixture()
	b := fx.mustSeal(t, false, []byte("shared"))
	e, err := e2ee.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	alice, bob := newMember("alice"), newMember("bob")
	c := e2ee.SealedKeyContext{Room: "general", Epoch: 1, Recipient: bob.user}
	sp, _ := e2ee.NewSealingPairKey(alice.xpriv, bob.xpub)
	op, _ := e2ee.NewOpeningPairKey(bob.xpriv, alice.xpub)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for range 8 {
		wg.Go(func() {
			for range 20 {
				if err := e.Verify(pubOf(fx.alice)); err != nil {
					errs <- err
				}
				if pt, err := e.Open("general", 1, &fx.key); err != nil || string(pt) != "shared" {
					errs <- err
				}
				if !bytes.Equal(e.Marshal(), b) {
					t.Error("Marshal differs")
				}
				s, err := sp.Seal(fx.key, c, nil)
				if err != nil {
					errs <- err
					continue
				}
				if k, err := op.Open(s, c); err != nil || k != fx.key {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}
