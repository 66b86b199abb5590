// Package readers opens and closes the history readers that membershipd
// makes on a member's behalf: the only way a member reads a room's
// messages, history and live.
//
// # Why membershipd makes them
//
// A JetStream consumer create request carries a full configuration
// (durable name, deliver subject) that NATS subject permissions cannot
// inspect, and a pull request's reply subject is not checked against the
// puller's permissions at all. A member allowed to create or pull
// consumers could therefore keep a durable consumer reading after its
// removal, hand its name to an accomplice, or have JetStream deliver a
// room's messages to subjects it may not publish on. So members get no
// consumer API at all. Instead a member asks membershipd's HTTP API for a
// reader; membershipd checks that the member belongs to the room at that
// moment and creates, with its own connection, a consumer that:
//
//   - filters the one room's subject;
//   - pushes to a subject in the member's own inbox namespace
//     ([api.ValidReaderSubject]), which only that member may subscribe to;
//   - is ephemeral, in memory, with one replica, and deleted by the
//     server after [Config.Inactive] with nobody listening;
//   - needs no acknowledgement (AckNone) and sends idle heartbeats and
//     flow-control requests, which the member answers on "$JS.FC.…";
//   - carries its owner and room in its metadata.
//
// When a member is removed from a room, leaves it, or is revoked, its
// readers are deleted ([Manager.CloseFor]) by the node that made the change
// (for a deleted room, every reader of it and its messages in the history
// stream: [Manager.DeleteRoom]),
// and every node also deletes, at every [Manager.Sweep], any reader whose
// owner is no longer an active member of its room: a change made behind the
// API's back (the host CLI, another node) closes readers within one sweep.
//
// The readers live in JetStream, not in this process: every node sees and
// closes the same set, and no state is kept here.
//
// # Concurrency
//
// A Manager is safe for concurrent use.
package readers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/subjects"
)

// Metadata keys of a reader's consumer.
const (
	MetaUser = "unibus_reader_user"
	MetaRoom = "unibus_reader_room"
)

// Defaults of [Config].
const (
	DefaultHeartbeat  = 2 * time.Second
	DefaultInactive   = 30 * time.Second
	DefaultMaxPerUser = 64
	// DefaultSweep is how often [Manager.Run] sweeps.
	DefaultSweep = 2 * time.Second
)

// Membership is what the manager needs of the control-plane store: is the
// user active, and a member of the room now.
type Membership interface {
	IsAuthorized(userKey string) bool
	IsMember(ctx context.Context, room, userKey string) (bool, error)
}

// Config configures a [Manager].
type Config struct {
	// JS is membershipd's own JetStream connection. Required.
	JS jetstream.JetStream
	// Members answers who may read. Required.
	Members Membership
	// Stream is the history stream; api.HistoryStream when empty.
	Stream string
	// Heartbeat is the idle heartbeat of a reader; DefaultHeartbeat when 0.
	Heartbeat time.Duration
	// Inactive is how long a reader lives with nobody listening;
	// DefaultInactive when 0.
	Inactive time.Duration
	// MaxPerUser bounds the readers one user holds at once, over every
	// room and node; DefaultMaxPerUser when 0, no bound when negative.
	MaxPerUser int
	// Logger receives what the manager closes; nil discards.
	Logger *slog.Logger
	// Observer, when set, is told of every reader opened and closed, for
	// an operator's counters.
	Observer Observer
}

// Observer is told of the readers a [Manager] opens and closes (package
// metrics counts them for Prometheus). Its methods are called on the
// request path and by the sweep, concurrently: they must be cheap and
// must not block. Readers that JetStream deletes itself, after
// [Config.Inactive] with nobody listening, are not told.
type Observer interface {
	// ReaderOpened is called for every reader opened.
	ReaderOpened()
	// ReadersClosed is called with the number of readers a call closed,
	// when it closed any, and one of the Closed… reasons.
	ReadersClosed(reason string, n int)
}

// The reasons readers are closed, as [Observer.ReadersClosed] is told.
const (
	ClosedByOwner = "owner"   // its owner is done with it ([Manager.Close])
	ClosedRemoved = "removed" // its owner was removed, left or was revoked ([Manager.CloseFor])
	ClosedSwept   = "swept"   // the sweep found its owner out of the room ([Manager.Sweep])
)

// CloseReasons lists every reason.
var CloseReasons = []string{ClosedByOwner, ClosedRemoved, ClosedSwept}

// Manager opens and closes readers. Make one with [New].
type Manager struct {
	cfg Config
	log *slog.Logger
}

// New returns a manager of cfg.
func New(cfg Config) *Manager {
	if cfg.Stream == "" {
		cfg.Stream = api.HistoryStream
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = DefaultHeartbeat
	}
	if cfg.Inactive <= 0 {
		cfg.Inactive = DefaultInactive
	}
	if cfg.MaxPerUser == 0 {
		cfg.MaxPerUser = DefaultMaxPerUser
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Manager{cfg: cfg, log: log}
}

// Open makes a reader of room for user, delivering to deliver from
// startSeq (0: the room's first message). The caller has checked that
// user is who it claims; Open checks that it is an active member now,
// and again once the reader exists, so that a removal committed meanwhile
// cannot leave it open.
func (m *Manager) Open(ctx context.Context, user, room, deliver string, startSeq uint64) (api.Reader, error) {
	if !api.ValidRoomID(room) {
		return api.Reader{}, api.Errorf(api.CodeInvalid, "invalid room id %q: check it with `unibus room list`", room)
	}
	if !api.ValidReaderSubject(user, deliver) {
		return api.Reader{}, api.Errorf(api.CodeInvalid, "deliver subject %q is not one of yours: use %s.%s.<token>, the token of letters, digits, '-' or '_'", deliver, subjects.InboxPrefix(user), api.ReaderSubjectToken)
	}
	if err := m.mayRead(ctx, user, room); err != nil {
		return api.Reader{}, err
	}
	if m.cfg.MaxPerUser > 0 {
		n, err := m.count(ctx, user)
		if err != nil {
			return api.Reader{}, err
		}
		if n >= m.cfg.MaxPerUser {
			return api.Reader{}, api.Errorf(api.CodeRateLimited, "you hold %d history readers, the most this bus allows (membershipd --max-readers): end other reads, or wait %s for abandoned ones to close", n, m.cfg.Inactive)
		}
	}
	last, err := m.lastSeq(ctx, room)
	if err != nil {
		return api.Reader{}, err
	}
	cfg := jetstream.ConsumerConfig{
		Name:              subjects.NewConsumerPrefix(),
		Description:       "unibus history reader",
		DeliverSubject:    deliver,
		FilterSubject:     api.RoomSubject(room),
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		AckPolicy:         jetstream.AckNonePolicy,
		FlowControl:       true,
		IdleHeartbeat:     m.cfg.Heartbeat,
		InactiveThreshold: m.cfg.Inactive,
		MemoryStorage:     true,
		Replicas:          1,
		Metadata:          map[string]string{MetaUser: user, MetaRoom: room},
	}
	if startSeq > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, startSeq
	}
	c, err := m.cfg.JS.CreatePushConsumer(ctx, m.cfg.Stream, cfg)
	if err != nil {
		return api.Reader{}, m.fail("open a history reader", err)
	}
	name := c.CachedInfo().Name
	// A removal committed between the check above and the create has
	// already listed the readers to close, without this one.
	if err := m.mayRead(ctx, user, room); err != nil {
		m.delete(ctx, name)
		return api.Reader{}, err
	}
	if m.cfg.Observer != nil {
		m.cfg.Observer.ReaderOpened()
	}
	return api.Reader{Name: name, Room: room, Deliver: deliver, StartSeq: startSeq, LastSeq: last, Heartbeat: m.cfg.Heartbeat.Milliseconds()}, nil
}

// Close deletes the reader name of user in room: its owner is done with
// it. not_found if user holds no such reader.
func (m *Manager) Close(ctx context.Context, user, room, name string) error {
	info, err := m.cfg.JS.PushConsumer(ctx, m.cfg.Stream, name)
	if err == nil {
		md := info.CachedInfo().Config.Metadata
		if md[MetaUser] == user && md[MetaRoom] == room {
			err := m.delete(ctx, name)
			if err == nil {
				m.closed(ClosedByOwner, 1)
			}
			return m.fail("close a history reader", err)
		}
	} else if !errors.Is(err, jetstream.ErrConsumerNotFound) && !errors.Is(err, jetstream.ErrInvalidConsumerName) {
		return m.fail("close a history reader", err)
	}
	return api.Errorf(api.CodeNotFound, "you hold no history reader %q in room %s: it may have closed already", name, room)
}

// CloseFor deletes every reader of user in room, or in every room when
// room is empty: the user was removed, left, or was revoked. It returns
// how many it deleted.
func (m *Manager) CloseFor(ctx context.Context, user, room string) (int, error) {
	n := 0
	err := m.each(ctx, func(name, u, r string) error {
		if u != user || (room != "" && r != room) {
			return nil
		}
		if err := m.delete(ctx, name); err != nil {
			return err
		}
		n++
		return nil
	})
	if n > 0 {
		m.log.Info("closed history readers", "user", user, "room", room, "readers", n)
		m.closed(ClosedRemoved, n)
	}
	return n, m.fail("close history readers", err)
}

// DeleteRoom ends room's history, for a room deleted from the store:
// every reader of it, whoever holds it, is deleted, then its messages are
// purged from the history stream. It returns how many readers it deleted.
// Running it again is harmless: a message published to the room after
// the purge (by a member whose connection still had the room) is purged
// by the next run.
func (m *Manager) DeleteRoom(ctx context.Context, room string) (int, error) {
	if !api.ValidRoomID(room) {
		return 0, api.Errorf(api.CodeInvalid, "invalid room id %q: check it with `unibus room list`", room)
	}
	n := 0
	err := m.each(ctx, func(name, _, r string) error {
		if r != room {
			return nil
		}
		if err := m.delete(ctx, name); err != nil {
			return err
		}
		n++
		return nil
	})
	if err != nil {
		return n, m.fail("close the readers of a deleted room", err)
	}
	st, err := m.cfg.JS.Stream(ctx, m.cfg.Stream)
	if err != nil {
		return n, m.fail("purge a deleted room's history", err)
	}
	if err := st.Purge(ctx, jetstream.WithPurgeSubject(api.RoomSubject(room))); err != nil {
		return n, m.fail("purge a deleted room's history", err)
	}
	m.log.Info("deleted a room's history", "room", room, "readers", n)
	return n, nil
}

// Sweep deletes every reader whose owner is no longer an active member of
// its room, and returns how many. Any node may run it at any time.
func (m *Manager) Sweep(ctx context.Context) (int, error) {
	n := 0
	err := m.each(ctx, func(name, user, room string) error {
		if m.mayRead(ctx, user, room) == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err := m.delete(ctx, name); err != nil {
			return err
		}
		m.log.Info("closed a history reader of a user no longer in its room", "user", user, "room", room)
		n++
		return nil
	})
	if n > 0 {
		m.closed(ClosedSwept, n)
	}
	return n, m.fail("sweep history readers", err)
}

// closed tells the observer of n readers closed for reason.
func (m *Manager) closed(reason string, n int) {
	if m.cfg.Observer != nil {
		m.cfg.Observer.ReadersClosed(reason, n)
	}
}

// Run sweeps every interval (DefaultSweep when 0) until ctx ends,
// logging a failure once until a sweep works again.
func (m *Manager) Run(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = DefaultSweep
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		_, err := m.Sweep(ctx)
		switch {
		case err != nil && ctx.Err() == nil && !failing:
			m.log.Warn("cannot sweep history readers: readers of removed members close only when their owner stops listening; check JetStream", "err", err)
			failing = true
		case err == nil && failing:
			m.log.Info("sweeping history readers again")
			failing = false
		}
	}
}

// mayRead is nil when user is an active member of room now, else the
// error the API answers.
func (m *Manager) mayRead(ctx context.Context, user, room string) error {
	if !m.cfg.Members.IsAuthorized(user) {
		return api.Errorf(api.CodeForbidden, "your user was revoked: ask an admin")
	}
	ok, err := m.cfg.Members.IsMember(ctx, room, user)
	if err != nil {
		return err
	}
	if !ok {
		return api.Errorf(api.CodeForbidden, "you are not a member of room %s: ask a member to add you", room)
	}
	return nil
}

// each calls fn with the name, owner and room of every reader.
func (m *Manager) each(ctx context.Context, fn func(name, user, room string) error) error {
	st, err := m.cfg.JS.Stream(ctx, m.cfg.Stream)
	if err != nil {
		return err
	}
	l := st.ListConsumers(ctx)
	for info := range l.Info() {
		md := info.Config.Metadata
		user, room := md[MetaUser], md[MetaRoom]
		if user == "" || room == "" {
			continue
		}
		if err := fn(info.Name, user, room); err != nil {
			return err
		}
	}
	return l.Err()
}

// count is the number of readers user holds.
func (m *Manager) count(ctx context.Context, user string) (int, error) {
	n := 0
	err := m.each(ctx, func(_, u, _ string) error {
		if u == user {
			n++
		}
		return nil
	})
	return n, m.fail("count history readers", err)
}

// lastSeq is the stream sequence of room's last message, 0 if none.
func (m *Manager) lastSeq(ctx context.Context, room string) (uint64, error) {
	st, err := m.cfg.JS.Stream(ctx, m.cfg.Stream)
	if err != nil {
		return 0, m.fail("read the history position", err)
	}
	msg, err := st.GetLastMsgForSubject(ctx, api.RoomSubject(room))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, m.fail("read the history position", err)
	}
	return msg.Sequence, nil
}

// delete deletes a reader; one already gone is not an error.
func (m *Manager) delete(ctx context.Context, name string) error {
	err := m.cfg.JS.DeleteConsumer(ctx, m.cfg.Stream, name)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil
	}
	return err
}

// fail turns a JetStream error into the error the API answers:
// unavailable when JetStream cannot be reached, the error as is otherwise.
func (m *Manager) fail(op string, err error) error {
	if err == nil {
		return nil
	}
	var ae *api.Error
	if errors.As(err, &ae) || errors.Is(err, context.Canceled) {
		return err
	}
	// A deadline passed is JetStream not answering in time, as while its
	// nodes elect a new leader; a 503 is JetStream saying so. Either is
	// worth trying again, on this node or another.
	var apiErr *jetstream.APIError
	if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrJetStreamNotEnabled) ||
		errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &apiErr) && apiErr.Code == 503) {
		m.log.Warn("history stream unavailable", "op", op, "err", err)
		return api.Errorf(api.CodeUnavailable, "the message history (NATS JetStream) is unavailable: try again")
	}
	return fmt.Errorf("%s: %w", op, err)
}
