package storetest

import (
	"time"

	"github.com/enmanuel/unibus/pkg/api"
)

var nonceCases = []testCase{
	{"first_use_then_replay", func(f *fixture) {
		exp := time.Now().Add(time.Minute)
		if err := f.s.UseNonce(f.ctx, "n1", exp); err != nil {
			f.Fatalf("first UseNonce: %v", err)
		}
		wantCode(f, f.s.UseNonce(f.ctx, "n1", exp), api.CodeConflict, "replayed nonce")
		if err := f.s.UseNonce(f.ctx, "n2", exp); err != nil {
			f.Fatalf("another nonce: %v", err)
		}
	}},
	{"expired_nonce_is_forgotten", func(f *fixture) {
		if err := f.s.UseNonce(f.ctx, "old", time.Now().Add(-time.Second)); err != nil {
			f.Fatal(err)
		}
		if err := f.s.UseNonce(f.ctx, "old", time.Now().Add(time.Minute)); err != nil {
			f.Fatalf("reuse after expiry: %v", err)
		}
	}},
	{"concurrent_replays_one_wins", func(f *fixture) {
		exp := time.Now().Add(time.Minute)
		errs := Race(8, func(int) error { return f.s.UseNonce(f.ctx, "race", exp) })
		OneWinner(f, errs, "concurrent uses of one nonce")
	}},
}
