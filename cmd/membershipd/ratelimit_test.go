package main

import (
	"crypto/rand"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/enmanuel/unibus/internal/testutil/testbus"
	"github.com/enmanuel/unibus/pkg/reqsig"
)

// TestForgedFloodDoesNotSpendTheVictimsLimit: under enforce, a stranger
// who knows alice's (public) key sends requests that claim it, with
// signatures that do not verify, past alice's burst: they are refused, and
// spend only their address's budget, so alice's own signed requests are
// still served.
func TestForgedFloodDoesNotSpendTheVictimsLimit(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := startServer(t, dir, "--bus-auth", "enforce", "--api-rate", "5", "--api-burst", "5")
	alice := testbus.NewIdentity(t, "alice")
	runCLI(t, 0, "user", "seed", "--db", filepath.Join(dir, "unibus.db"), alice.Public().Token())

	// 20 forged requests: four times alice's burst, within the address's 50.
	var flood []int
	for range 20 {
		sig := reqsig.Signature{User: alice.UserKey(), Time: time.Now().UnixMilli(), Body: reqsig.EmptyBody, Sig: make([]byte, 64)}
		rand.Read(sig.Nonce[:])
		req := mustRequest(t, http.MethodGet, s.URL+"/v1/me")
		req.Header.Set("Authorization", sig.String())
		flood = append(flood, doJSON(t, req, nil))
	}
	for i := range 5 {
		if code := getMe(t, s.URL, alice); code != http.StatusOK {
			t.Fatalf("alice's signed request %d after the forged flood = %d; want 200: the flood spent her budget", i+1, code)
		}
	}
	for i, code := range flood {
		if code != http.StatusUnauthorized {
			t.Fatalf("forged request %d claiming alice = %d; want 401", i+1, code)
		}
	}
}
