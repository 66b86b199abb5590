// Package storemetrics measures a [store.Store] for Prometheus, without
// changing its backend: [Metrics.Wrap] returns a Store that times every
// call of the one it wraps, into a latency histogram by backend and
// operation, and [NewCollector] reads the numbers of users and rooms from
// a store at every scrape.
//
// Nothing is registered at import time: [New] registers on the registry
// it is given.
//
// # Cost
//
// A wrapped call costs two reads of the monotonic clock and one
// observation of a histogram series resolved when the store was wrapped:
// no allocation, no lock beyond the histogram's atomics.
//
// # Concurrency
//
// A wrapped Store is as safe for concurrent use as the store it wraps; a
// collector is safe for concurrent scrapes.
package storemetrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/membership/store"
	"github.com/enmanuel/unibus/pkg/roomchain"
)

// The series' names.
const (
	DurationName = "unibus_store_operation_duration_seconds"
	UsersName    = "unibus_users"
	RoomsName    = "unibus_rooms"
)

// Buckets are the store latency histogram's upper bounds, in seconds:
// from 100 µs (a cached read) to 2.5 s (a write waiting out another
// process's lock, or a KV write to a replica far away).
var Buckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}

// op is one timed operation of the Store.
type op int

const (
	opCreateUser op = iota
	opGetUser
	opListUsers
	opRevokeUser
	opIsAuthorized
	opCreateRoom
	opGetRoom
	opRoomsOf
	opMembers
	opAddMembers
	opRekey
	opSealedKeys
	opIsMember
	opStatements
	opAddBlob
	opGetBlob
	opUseNonce
	opRevokedUsers
	opCounts
	numOps
)

// Ops are the values of the op label, one per method of [store.Store]
// (Close is not timed) and of the optional ones a wrapped store
// forwards (revoked_users, counts).
var Ops = [numOps]string{
	opCreateUser:   "create_user",
	opGetUser:      "get_user",
	opListUsers:    "list_users",
	opRevokeUser:   "revoke_user",
	opIsAuthorized: "is_authorized",
	opCreateRoom:   "create_room",
	opGetRoom:      "get_room",
	opRoomsOf:      "rooms_of",
	opMembers:      "members",
	opAddMembers:   "add_members",
	opRekey:        "rekey",
	opSealedKeys:   "sealed_keys",
	opIsMember:     "is_member",
	opStatements:   "statements",
	opAddBlob:      "add_blob",
	opGetBlob:      "get_blob",
	opUseNonce:     "use_nonce",
	opRevokedUsers: "revoked_users",
	opCounts:       "counts",
}

// Metrics is the store latency histogram, registered once; [Metrics.Wrap]
// measures any number of stores with it.
type Metrics struct {
	duration *prometheus.HistogramVec
}

// New registers the store latency histogram on reg.
func New(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    DurationName,
		Help:    "Time a call of the control-plane store took, by backend and operation, errors included.",
		Buckets: Buckets,
	}, []string{"backend", "op"})}
	if err := reg.Register(m.duration); err != nil {
		return nil, fmt.Errorf("register %s: %w", DurationName, err)
	}
	return m, nil
}

// Wrap returns s measured under the backend label backend ("sqlite",
// "kv"). Every series of that backend exists, at zero, from now on.
func (m *Metrics) Wrap(s store.Store, backend string) *Store {
	w := &Store{s: s}
	for i, name := range Ops {
		w.obs[i] = m.duration.WithLabelValues(backend, name)
	}
	return w
}

// Store is a [store.Store] that times every call of the one it wraps. It
// also forwards the optional methods membershipd asks a store for:
// RevokedUsers (the data plane's revocation watch) and Counts
// ([store.Counter]).
type Store struct {
	s   store.Store
	obs [numOps]prometheus.Observer
}

// Unwrap returns the store w measures.
func (w *Store) Unwrap() store.Store { return w.s }

// done observes the time since start as one call of o.
func (w *Store) done(o op, start time.Time) { w.obs[o].Observe(time.Since(start).Seconds()) }

func (w *Store) CreateUser(ctx context.Context, u api.User) error {
	defer w.done(opCreateUser, time.Now())
	return w.s.CreateUser(ctx, u)
}

func (w *Store) GetUser(ctx context.Context, keyOrName string) (api.User, error) {
	defer w.done(opGetUser, time.Now())
	return w.s.GetUser(ctx, keyOrName)
}

func (w *Store) ListUsers(ctx context.Context) ([]api.User, error) {
	defer w.done(opListUsers, time.Now())
	return w.s.ListUsers(ctx)
}

func (w *Store) RevokeUser(ctx context.Context, keyOrName string, at time.Time) (api.User, error) {
	defer w.done(opRevokeUser, time.Now())
	return w.s.RevokeUser(ctx, keyOrName, at)
}

func (w *Store) IsAuthorized(userKey string) bool {
	defer w.done(opIsAuthorized, time.Now())
	return w.s.IsAuthorized(userKey)
}

func (w *Store) CreateRoom(ctx context.Context, r api.Room, creatorKey *api.SealedKey, st roomchain.Signed) error {
	defer w.done(opCreateRoom, time.Now())
	return w.s.CreateRoom(ctx, r, creatorKey, st)
}

func (w *Store) GetRoom(ctx context.Context, id string) (api.Room, error) {
	defer w.done(opGetRoom, time.Now())
	return w.s.GetRoom(ctx, id)
}

func (w *Store) RoomsOf(ctx context.Context, userKey string) ([]api.Room, error) {
	defer w.done(opRoomsOf, time.Now())
	return w.s.RoomsOf(ctx, userKey)
}

func (w *Store) Members(ctx context.Context, room string, history bool) ([]api.Member, error) {
	defer w.done(opMembers, time.Now())
	return w.s.Members(ctx, room, history)
}

func (w *Store) AddMembers(ctx context.Context, a store.Add) (api.Room, error) {
	defer w.done(opAddMembers, time.Now())
	return w.s.AddMembers(ctx, a)
}

func (w *Store) Rekey(ctx context.Context, c store.Rekey) (api.Room, error) {
	defer w.done(opRekey, time.Now())
	return w.s.Rekey(ctx, c)
}

func (w *Store) SealedKeys(ctx context.Context, room, member string, epoch uint64) ([]api.SealedKey, error) {
	defer w.done(opSealedKeys, time.Now())
	return w.s.SealedKeys(ctx, room, member, epoch)
}

func (w *Store) IsMember(ctx context.Context, room, userKey string) (bool, error) {
	defer w.done(opIsMember, time.Now())
	return w.s.IsMember(ctx, room, userKey)
}

func (w *Store) Statements(ctx context.Context, room string, after uint64) ([]roomchain.Signed, error) {
	defer w.done(opStatements, time.Now())
	return w.s.Statements(ctx, room, after)
}

func (w *Store) AddBlob(ctx context.Context, b api.Blob) error {
	defer w.done(opAddBlob, time.Now())
	return w.s.AddBlob(ctx, b)
}

func (w *Store) GetBlob(ctx context.Context, room, id string) (api.Blob, error) {
	defer w.done(opGetBlob, time.Now())
	return w.s.GetBlob(ctx, room, id)
}

func (w *Store) UseNonce(ctx context.Context, nonce string, expires time.Time) error {
	defer w.done(opUseNonce, time.Now())
	return w.s.UseNonce(ctx, nonce, expires)
}

// Close closes the wrapped store; it is not timed.
func (w *Store) Close() error { return w.s.Close() }

// RevokedUsers lists the revoked users' keys with the wrapped store's
// narrow query when it has one (both backends do), else from ListUsers.
func (w *Store) RevokedUsers(ctx context.Context) ([]string, error) {
	defer w.done(opRevokedUsers, time.Now())
	if rl, ok := w.s.(interface {
		RevokedUsers(context.Context) ([]string, error)
	}); ok {
		return rl.RevokedUsers(ctx)
	}
	users, err := w.s.ListUsers(ctx)
	if err != nil {
		return nil, err
	}
	revoked := []string{}
	for _, u := range users {
		if !u.Active() {
			revoked = append(revoked, u.User)
		}
	}
	return revoked, nil
}

// ErrNotCounted is the error of Counts when the wrapped store is not a
// [store.Counter].
var ErrNotCounted = errors.New("the store does not count its users and rooms")

// Counts forwards to the wrapped store if it is a [store.Counter].
func (w *Store) Counts(ctx context.Context) (store.Counts, error) {
	c, ok := w.s.(store.Counter)
	if !ok {
		return store.Counts{}, ErrNotCounted
	}
	defer w.done(opCounts, time.Now())
	return c.Counts(ctx)
}

// CountTimeout bounds the store read of one scrape.
const CountTimeout = 2 * time.Second

// collector reports a store's counts at every scrape.
type collector struct {
	c       store.Counter
	log     *slog.Logger
	users   *prometheus.Desc
	rooms   *prometheus.Desc
	failing atomic.Bool
}

// NewCollector returns a collector of unibus_users{status} and
// unibus_rooms, read from c at every scrape (one Counts call, bounded by
// [CountTimeout]). A failed read leaves both out of that scrape and is
// logged to log (nil discards) once, until a read works again.
func NewCollector(c store.Counter, log *slog.Logger) prometheus.Collector {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &collector{
		c:     c,
		log:   log,
		users: prometheus.NewDesc(UsersName, "Users the control-plane store holds, by status (active, revoked).", []string{"status"}, nil),
		rooms: prometheus.NewDesc(RoomsName, "Rooms the control-plane store holds.", nil, nil),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.users
	ch <- c.rooms
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), CountTimeout)
	defer cancel()
	n, err := c.c.Counts(ctx)
	if err != nil {
		if !c.failing.Swap(true) {
			c.log.Warn("metrics: cannot count users and rooms: unibus_users and unibus_rooms are left out of scrapes until it works again; check the store", "err", err)
		}
		return
	}
	if c.failing.Swap(false) {
		c.log.Info("metrics: counting users and rooms again")
	}
	ch <- prometheus.MustNewConstMetric(c.users, prometheus.GaugeValue, float64(n.ActiveUsers), api.StatusActive)
	ch <- prometheus.MustNewConstMetric(c.users, prometheus.GaugeValue, float64(n.RevokedUsers), api.StatusRevoked)
	ch <- prometheus.MustNewConstMetric(c.rooms, prometheus.GaugeValue, float64(n.Rooms))
}
