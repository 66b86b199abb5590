package membership

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/enmanuel/unibus/pkg/api"
)

// HistoryDuplicateWindow is how long the history stream remembers message
// ids. Clients publish with a Nats-Msg-Id header equal to the message id, so
// a message retried within this window is stored once.
const HistoryDuplicateWindow = 2 * time.Minute

// HistoryLimits bounds the history stream. The zero value keeps everything
// forever on one replica.
type HistoryLimits struct {
	// MaxAge drops messages older than this; 0 keeps them forever.
	MaxAge time.Duration
	// MaxBytes bounds the whole stream, oldest messages dropped first;
	// 0 or -1 means unlimited.
	MaxBytes int64
	// MaxMsgsPerSubject bounds each room's history (one subject per room),
	// oldest messages dropped first; 0 or -1 means unlimited.
	MaxMsgsPerSubject int64
	// Replicas is the number of copies in a cluster; below 1 means 1.
	Replicas int
}

// streamConfig returns the stream configuration for l.
func (l HistoryLimits) streamConfig() (jetstream.StreamConfig, error) {
	if l.MaxAge < 0 {
		return jetstream.StreamConfig{}, fmt.Errorf("history max age %s is negative: use 0 to keep messages forever", l.MaxAge)
	}
	dup := HistoryDuplicateWindow
	if l.MaxAge > 0 && l.MaxAge < dup {
		// JetStream refuses a duplicate window longer than the max age.
		dup = l.MaxAge
	}
	return jetstream.StreamConfig{
		Name:              api.HistoryStream,
		Description:       "unibus room messages (end-to-end encrypted envelopes)",
		Subjects:          []string{api.HistorySubjects},
		Storage:           jetstream.FileStorage,
		Retention:         jetstream.LimitsPolicy,
		Discard:           jetstream.DiscardOld,
		MaxAge:            l.MaxAge,
		MaxBytes:          unlimited(l.MaxBytes),
		MaxMsgs:           -1,
		MaxMsgsPerSubject: unlimited(l.MaxMsgsPerSubject),
		Duplicates:        dup,
		AllowDirect:       true,
		Replicas:          max(1, l.Replicas),
	}, nil
}

// unlimited maps the "no limit" spellings 0 and any negative value to -1,
// the value JetStream stores, so that an unchanged configuration is not
// seen as an update.
func unlimited(n int64) int64 {
	if n <= 0 {
		return -1
	}
	return n
}

// EnsureHistoryStream creates the stream that keeps every room's messages
// ([api.HistoryStream] over [api.HistorySubjects]), or updates its limits to
// l if it exists. It is idempotent and safe to call on every start.
func EnsureHistoryStream(ctx context.Context, js jetstream.JetStream, l HistoryLimits) (jetstream.Stream, error) {
	cfg, err := l.streamConfig()
	if err != nil {
		return nil, err
	}
	st, err := js.CreateOrUpdateStream(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("ensure history stream %s: %w", api.HistoryStream, err)
	}
	return st, nil
}
