package membership

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/enmanuel/unibus/pkg/api"
)

// HistoryDuplicateWindow is how long the history stream remembers message
// ids. Clients publish with a Nats-Msg-Id header equal to the message id, so
// a message retried within this window is stored once.
const HistoryDuplicateWindow = 2 * time.Minute

// HistoryLimits bounds the history stream. The zero value keeps everything
// forever, on one replica if the stream is made anew.
type HistoryLimits struct {
	// MaxAge drops messages older than this; 0 keeps them forever.
	MaxAge time.Duration
	// MaxBytes bounds the whole stream, oldest messages dropped first;
	// 0 or -1 means unlimited.
	MaxBytes int64
	// MaxMsgsPerSubject bounds each room's history (one subject per room),
	// oldest messages dropped first; 0 or -1 means unlimited.
	MaxMsgsPerSubject int64
	// Replicas is the number of copies of a stream made anew in a
	// cluster; below 1 means 1. An existing stream keeps its own: only an
	// explicit change (`membershipd cluster replicas N`) changes them.
	Replicas int
	// KeepLimits leaves the limits above (MaxAge, MaxBytes,
	// MaxMsgsPerSubject) of an existing stream as they are: they apply
	// only to a stream made anew. membershipd sets it when it is given no
	// --history-* flag, so that a node started without them does not undo
	// the limits another node set.
	KeepLimits bool
}

// streamConfig returns the stream configuration for l.
func (l HistoryLimits) streamConfig() (jetstream.StreamConfig, error) {
	if l.MaxAge < 0 {
		return jetstream.StreamConfig{}, fmt.Errorf("history max age %s is negative: use 0 to keep messages forever", l.MaxAge)
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
		Duplicates:        duplicateWindow(l.MaxAge),
		AllowDirect:       true,
		Replicas:          max(1, l.Replicas),
	}, nil
}

// duplicateWindow is the stream's duplicate window for a max age:
// [HistoryDuplicateWindow], or the max age if shorter, since JetStream
// refuses a duplicate window longer than the max age.
func duplicateWindow(maxAge time.Duration) time.Duration {
	if maxAge > 0 && maxAge < HistoryDuplicateWindow {
		return maxAge
	}
	return HistoryDuplicateWindow
}

// update returns have, an existing stream's configuration, with what the
// bus depends on taken from want and, unless l.KeepLimits, the limits
// too. Replicas and whatever else an operator may have set stay.
func (l HistoryLimits) update(have, want jetstream.StreamConfig) jetstream.StreamConfig {
	upd := have
	upd.Subjects = want.Subjects
	upd.Retention = want.Retention
	upd.Discard = want.Discard
	upd.MaxMsgs = want.MaxMsgs
	upd.AllowDirect = want.AllowDirect
	if !l.KeepLimits {
		upd.MaxAge, upd.MaxBytes, upd.MaxMsgsPerSubject = want.MaxAge, want.MaxBytes, want.MaxMsgsPerSubject
	}
	upd.Duplicates = duplicateWindow(upd.MaxAge)
	return upd
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
// ([api.HistoryStream] over [api.HistorySubjects]), or brings an existing
// one up to date: the settings the bus depends on and, unless
// l.KeepLimits, l's limits. An existing stream keeps its replicas
// (compare the returned stream's with l.Replicas to tell). It is
// idempotent and safe to call on every start of every node.
func EnsureHistoryStream(ctx context.Context, js jetstream.JetStream, l HistoryLimits) (jetstream.Stream, error) {
	want, err := l.streamConfig()
	if err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		st, err := js.Stream(ctx, want.Name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			st, err = js.CreateStream(ctx, want)
			if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) && attempt < 3 {
				// Made meanwhile, by another node: use that one.
				continue
			}
		} else if err == nil {
			have := st.CachedInfo().Config
			if upd := l.update(have, want); !reflect.DeepEqual(upd, have) {
				st, err = js.UpdateStream(ctx, upd)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("ensure history stream %s: %w", api.HistoryStream, err)
		}
		return st, nil
	}
}
