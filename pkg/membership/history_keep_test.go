package membership

import (
	"context"
	"testing"
	"time"
)

// TestEnsureHistoryStreamKeepLimits checks that KeepLimits leaves the
// limits of an existing stream as they are, and that its replicas are
// never changed by EnsureHistoryStream (membershipd cluster replicas does
// that).
func TestEnsureHistoryStreamKeepLimits(t *testing.T) {
	t.Parallel()
	js := startJetStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := EnsureHistoryStream(ctx, js, HistoryLimits{MaxAge: time.Hour, MaxMsgsPerSubject: 10}); err != nil {
		t.Fatal(err)
	}
	st, err := EnsureHistoryStream(ctx, js, HistoryLimits{KeepLimits: true})
	if err != nil {
		t.Fatal(err)
	}
	if cfg := st.CachedInfo().Config; cfg.MaxAge != time.Hour || cfg.MaxMsgsPerSubject != 10 {
		t.Errorf("with KeepLimits: MaxAge %v, MaxMsgsPerSubject %d; want the existing 1h and 10", cfg.MaxAge, cfg.MaxMsgsPerSubject)
	}
	// A standalone server keeps one copy: asking for three is ignored on
	// an existing stream, not refused.
	st, err = EnsureHistoryStream(ctx, js, HistoryLimits{MaxAge: 2 * time.Hour, Replicas: 3})
	if err != nil {
		t.Fatalf("EnsureHistoryStream of an existing R1 stream with Replicas 3: %v; want the stream as it is", err)
	}
	if cfg := st.CachedInfo().Config; cfg.Replicas != 1 || cfg.MaxAge != 2*time.Hour {
		t.Errorf("replicas %d, MaxAge %v; want 1 kept and 2h applied", cfg.Replicas, cfg.MaxAge)
	}
}
