package kvstore

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/identity"
	"github.com/enmanuel/unibus/pkg/membership/store"
)

// Config configures [Open] and [Import].
type Config struct {
	// Replicas is the number of copies of each bucket made in a cluster;
	// below 1 means 1. It applies to buckets that do not exist yet: an
	// existing bucket keeps its own replicas, and a difference from a
	// Replicas above 0 is logged: only an explicit change of the streams
	// (`membershipd cluster replicas N`) changes them.
	Replicas int
	// Prefix starts every bucket name; empty means "unibus". Letters,
	// digits, '-' and '_'.
	Prefix string
	// Logger receives the store's log; nil discards it.
	Logger *slog.Logger
}

// Bucket names, after the prefix and an underscore.
const (
	bucketUsers    = "users"
	bucketRooms    = "rooms"
	bucketRoomData = "roomdata"
	bucketBlobs    = "blobs"
	bucketNonces   = "nonces"
)

// kvBuckets are the bucket names of one prefix.
type kvBuckets struct{ users, rooms, data, blobs, nonces string }

func bucketsOf(prefix string) kvBuckets {
	return kvBuckets{
		users:  prefix + "_" + bucketUsers,
		rooms:  prefix + "_" + bucketRooms,
		data:   prefix + "_" + bucketRoomData,
		blobs:  prefix + "_" + bucketBlobs,
		nonces: prefix + "_" + bucketNonces,
	}
}

// Streams returns the names of the streams behind the buckets of prefix
// (empty: "unibus"), as [Open] makes them.
func Streams(prefix string) []string {
	if prefix == "" {
		prefix = "unibus"
	}
	b := bucketsOf(prefix)
	names := []string{b.users, b.rooms, b.data, b.blobs, b.nonces}
	for i, n := range names {
		names[i] = "KV_" + n
	}
	return names
}

var validPrefix = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// kvOpTimeout bounds a store operation that the caller gave no deadline.
const kvOpTimeout = 30 * time.Second

// jetstreamStore is the JetStream KV [store.Store].
type jetstreamStore struct {
	js      jetstream.JetStream
	nc      *nats.Conn
	log     *slog.Logger
	buckets kvBuckets

	users, rooms, data, blobs, nonces    jetstream.KeyValue
	usersStream, roomsStream, dataStream jetstream.Stream

	// part is the largest value stored in one message (see putLarge),
	// and inlineMax the largest encoded room state kept in its document.
	part, inlineMax int

	cache  *kvCache
	cancel context.CancelFunc
	done   chan struct{}
	closed sync.Once

	// hook, when set (tests only), is called at the named steps of a
	// change; an error it returns stops the change there, as a crash
	// would.
	hook func(step string) error
}

// Open opens the control-plane store on the JetStream KV buckets named
// by cfg, creating or updating them as needed (idempotent: safe on every
// start and on every node), and loads its cache from them. It needs
// nats-server 2.12 or later (atomic batch publish), run with
// sync_interval: always for acknowledged writes to be durable (see
// docs/kv-store.md). js must allow at least 1,024 unacknowledged
// asynchronous publishes (jetstream.New's default is 4,000). Close stops
// its watches; it does not close js's connection.
func Open(ctx context.Context, js jetstream.JetStream, cfg Config) (store.Store, error) {
	s, err := bindKV(ctx, js, cfg)
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithCancel(context.Background())
	s.cancel, s.done = cancel, make(chan struct{})
	s.cache = newKVCache(s)
	if err := s.cache.start(ctx, wctx, s.done); err != nil {
		cancel()
		<-s.done
		return nil, fmt.Errorf("kv store: load cache: %w", err)
	}
	return s, nil
}

// bindKV makes or brings up to date the buckets of cfg and binds them, without
// the cache: enough to import a snapshot, not to serve.
func bindKV(ctx context.Context, js jetstream.JetStream, cfg Config) (*jetstreamStore, error) {
	prefix := cfg.Prefix
	if prefix == "" {
		prefix = "unibus"
	}
	if !validPrefix.MatchString(prefix) {
		return nil, fmt.Errorf("kv store: bucket prefix %q: use 1 to 64 letters, digits, '-' or '_'", prefix)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &jetstreamStore{js: js, nc: js.Conn(), log: log, buckets: bucketsOf(prefix)}
	if err := s.ensureBuckets(ctx, cfg.Replicas); err != nil {
		return nil, err
	}
	// One value part is a message less room for its subject and headers.
	s.part = max(64<<10, int(s.nc.MaxPayload())-8<<10)
	s.inlineMax = inlineStateMax
	return s, nil
}

// ensureBuckets makes the streams behind the buckets that do not exist,
// with replicas copies (below 1: one), and binds them. An existing stream
// keeps its replicas and every setting this store does not depend on; a
// setting it depends on that differs (an older version's bucket) is
// brought up to date, the replicas as they are. Two nodes or host tools
// that ask for different replicas therefore never undo each other: only
// an explicit change of the streams (`membershipd cluster replicas N`)
// does. The streams are configured
// as nats.go's CreateKeyValue would, except:
//   - direct gets are off: every read is answered by the stream leader,
//     never by a replica that may be behind;
//   - users allows atomic batch publish (CreateUser writes two keys);
//   - nonces allows per-message TTLs, so that expired nonces go away.
func (s *jetstreamStore) ensureBuckets(ctx context.Context, replicas int) error {
	type bucket struct {
		name, desc  string
		atomic, ttl bool
		kv          *jetstream.KeyValue
		stream      *jetstream.Stream
	}
	var kept []string // "KV_…=3": existing streams whose replicas differ from the asked
	for _, b := range []bucket{
		{name: s.buckets.users, desc: "unibus users and their names", atomic: true, kv: &s.users, stream: &s.usersStream},
		{name: s.buckets.rooms, desc: "unibus room documents (the commit point of every membership change)", kv: &s.rooms, stream: &s.roomsStream},
		{name: s.buckets.data, desc: "unibus statements, sealed keys and large room states, by change", kv: &s.data, stream: &s.dataStream},
		{name: s.buckets.blobs, desc: "unibus blob records", kv: &s.blobs},
		{name: s.buckets.nonces, desc: "unibus used request nonces", ttl: true, kv: &s.nonces},
	} {
		cfg := kvStreamConfig(b.name, max(1, replicas), b.desc)
		cfg.AllowAtomicPublish = b.atomic
		cfg.AllowMsgTTL = b.ttl
		st, err := s.ensureStream(ctx, cfg)
		if err != nil {
			return fmt.Errorf("kv store: bucket %s: %w", b.name, err)
		}
		got := st.CachedInfo().Config
		if got.AllowAtomicPublish != cfg.AllowAtomicPublish || got.AllowMsgTTL != cfg.AllowMsgTTL {
			return fmt.Errorf("kv store: bucket %s: the NATS server ignored atomic batch publish or message TTLs: use nats-server 2.12 or later", b.name)
		}
		if replicas > 0 && got.Replicas != replicas {
			kept = append(kept, fmt.Sprintf("%s=%d", cfg.Name, got.Replicas))
		}
		kv, err := s.js.KeyValue(ctx, b.name)
		if err != nil {
			return fmt.Errorf("kv store: bucket %s: %w", b.name, err)
		}
		*b.kv = kv
		if b.stream != nil {
			*b.stream = st
		}
	}
	if len(kept) > 0 {
		s.log.Warn("kv store: existing buckets keep their replicas, not the number asked; change them with `membershipd cluster replicas N`",
			"asked", replicas, "streams", strings.Join(kept, " "))
	}
	return nil
}

// ensureStream returns the stream of want.Name, made with want if it does
// not exist. An existing one keeps its replicas and what the store does
// not set; the settings the store depends on are brought up to date.
func (s *jetstreamStore) ensureStream(ctx context.Context, want jetstream.StreamConfig) (jetstream.Stream, error) {
	for attempt := 0; ; attempt++ {
		st, err := s.js.Stream(ctx, want.Name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			st, err = s.js.CreateStream(ctx, want)
			if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) && attempt < 3 {
				// Made meanwhile, by another node: use that one.
				continue
			}
			if err == nil {
				s.log.Info("kv store: bucket made", "stream", want.Name, "replicas", want.Replicas)
			}
			return st, err
		}
		if err != nil {
			return nil, err
		}
		have := st.CachedInfo().Config
		upd, changed := ownedConfig(have, want)
		if !changed {
			return st, nil
		}
		st, err = s.js.UpdateStream(ctx, upd)
		if err != nil {
			return nil, fmt.Errorf("bring its settings up to date: %w", err)
		}
		s.log.Info("kv store: bucket settings brought up to date; replicas kept", "stream", want.Name, "replicas", have.Replicas)
		return st, nil
	}
}

// ownedConfig returns have with the settings the store depends on taken
// from want, and whether any differed. Replicas, placement, compression
// and the rest an operator may set stay as they are.
func ownedConfig(have, want jetstream.StreamConfig) (jetstream.StreamConfig, bool) {
	upd := have
	upd.Subjects = want.Subjects
	upd.MaxMsgsPerSubject = want.MaxMsgsPerSubject
	upd.MaxMsgs = want.MaxMsgs
	upd.MaxBytes = want.MaxBytes
	upd.MaxMsgSize = want.MaxMsgSize
	upd.Discard = want.Discard
	upd.AllowRollup = want.AllowRollup
	upd.DenyDelete = want.DenyDelete
	upd.AllowDirect = want.AllowDirect
	upd.Duplicates = want.Duplicates
	upd.AllowAtomicPublish = want.AllowAtomicPublish
	upd.AllowMsgTTL = want.AllowMsgTTL
	changed := !reflect.DeepEqual(upd, have)
	return upd, changed
}

// kvStreamConfig is the stream of a KV bucket as nats.go makes it, with
// one value per key, file storage, and direct gets off.
func kvStreamConfig(bucket string, replicas int, desc string) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:              "KV_" + bucket,
		Description:       desc,
		Subjects:          []string{"$KV." + bucket + ".>"},
		MaxMsgsPerSubject: 1,
		MaxMsgs:           -1,
		MaxBytes:          -1,
		MaxMsgSize:        -1,
		MaxConsumers:      -1,
		Storage:           jetstream.FileStorage,
		Replicas:          replicas,
		Discard:           jetstream.DiscardNew,
		AllowRollup:       true,
		DenyDelete:        true,
		AllowDirect:       false,
		Duplicates:        2 * time.Minute,
	}
}

// Close stops the cache's watches. It does not close the NATS connection.
func (s *jetstreamStore) Close() error {
	s.closed.Do(func() {
		if s.cancel != nil {
			s.cancel()
			<-s.done
		}
	})
	return nil
}

// ---- errors ----

// fail turns an error of the NATS client into the error a caller gets:
// an *api.Error as is, the context's error wrapped, unavailable when
// JetStream cannot be reached, internal otherwise.
func (s *jetstreamStore) fail(op string, err error) error {
	var ae *api.Error
	if errors.As(err, &ae) {
		return err
	}
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("membership store: %s: %w", op, err)
	}
	// A deadline passed is JetStream not answering in time (withTimeout),
	// as while its nodes elect a new leader; a 503 is JetStream saying so.
	// Either is worth trying again, on this node or another.
	var apiErr *jetstream.APIError
	if errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrConnectionClosed) ||
		errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, jetstream.ErrJetStreamNotEnabled) ||
		(errors.As(err, &apiErr) && apiErr.Code == 503) {
		s.log.Warn("kv store unavailable", "op", op, "err", err)
		return api.Errorf(api.CodeUnavailable, "the membership store (NATS JetStream) is unavailable: try again")
	}
	return fmt.Errorf("membership store: %s: %w", op, err)
}

// isWrongLastSeq reports whether err is JetStream refusing a write whose
// expected last sequence (a revision check) did not hold.
func isWrongLastSeq(err error) bool {
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return true
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// withTimeout gives ctx a deadline if it has none.
func withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, kvOpTimeout)
}

// step calls the test hook, if any, at a named step of a change.
func (s *jetstreamStore) step(name string) error {
	if s.hook == nil {
		return nil
	}
	return s.hook(name)
}

// ---- keys ----

// kvToken escapes s for use as one token of a KV key: as is if it holds
// only letters, digits, '-' and '_', else '=' and its unpadded base64url
// encoding ('=' never appears in the first form, so both are unambiguous).
func kvToken(s string) string {
	plain := s != ""
	for i := 0; plain && i < len(s); i++ {
		c := s[i]
		plain = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
	}
	if plain {
		return s
	}
	return "=" + base64.RawURLEncoding.EncodeToString([]byte(s))
}

// fromKVToken reverses kvToken.
func fromKVToken(t string) (string, bool) {
	if !strings.HasPrefix(t, "=") {
		return t, t != ""
	}
	b, err := base64.RawURLEncoding.DecodeString(t[1:])
	return string(b), err == nil
}

func userKey(u string) string       { return "u." + kvToken(u) }
func nameKey(name string) string    { return "n." + kvToken(identity.FoldName(name)) }
func stmtKey(room, c string) string { return "t." + room + "." + c }
func sealedKey(room, c, member string) string {
	return "k." + room + "." + c + "." + kvToken(member)
}
func stateKey(room, c string) string    { return "s." + room + "." + c }
func blobKey(room, id string) string    { return kvToken(room) + "." + kvToken(id) }
func subject(bucket, key string) string { return "$KV." + bucket + "." + key }

// roomKey is the key of room id in the rooms bucket, or "" if id cannot
// be a room (no room has such an id).
func roomKey(id string) string {
	if !api.ValidRoomID(id) {
		return ""
	}
	return id
}

var changeIDEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// newChangeID makes a fresh change id: 16 random bytes, 26 characters of
// [a-z2-7]. Imported data uses other, shorter ids (see importSnapshot).
func newChangeID() string {
	var b [16]byte
	rand.Read(b[:])
	return changeIDEncoding.EncodeToString(b[:])
}

// ---- reads ----

// getAttempt bounds one read of a key. A stream's leader answers reads,
// and a request that reaches the stream while its leadership moves (a
// node stopping steps its leaders down) is dropped unanswered: asked
// again, the new leader answers.
const getAttempt = time.Second

// get reads key from kv (the stream leader), asking again when a read
// goes unanswered, until ctx ends; ok is false if it does not exist.
func (s *jetstreamStore) get(ctx context.Context, kv jetstream.KeyValue, key string) (jetstream.KeyValueEntry, bool, error) {
	for {
		attempt, cancel := context.WithTimeout(ctx, getAttempt)
		e, err := kv.Get(attempt, key)
		cancel()
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			return nil, false, nil
		case err == nil:
			return e, true, nil
		case ctx.Err() == nil && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout)):
			s.log.Debug("kv read unanswered; asking again", "key", key, "err", err)
		default:
			return nil, false, err
		}
	}
}

// largeVersion starts every value written by putLarge, followed by the
// number of parts (a uvarint) and the first part.
const largeVersion = 1

// splitLarge reads the first message v of the value putLarge wrote under
// key: the number of parts, and the first part.
func splitLarge(key string, v []byte) (int, []byte, error) {
	if len(v) < 2 || v[0] != largeVersion {
		return 0, nil, fmt.Errorf("value %s: unknown format", key)
	}
	n, k := binary.Uvarint(v[1:])
	if k <= 0 || n < 1 || n > 1<<20 {
		return 0, nil, fmt.Errorf("value %s: bad part count", key)
	}
	return int(n), v[1+k:], nil
}

// getLarge reads a value written by putLarge; ok is false if it does not
// exist. Its parts after the first are read concurrently.
func (s *jetstreamStore) getLarge(ctx context.Context, kv jetstream.KeyValue, key string) ([]byte, bool, error) {
	e, ok, err := s.get(ctx, kv, key)
	if err != nil || !ok {
		return nil, ok, err
	}
	n, first, err := splitLarge(key, e.Value())
	if err != nil {
		return nil, false, err
	}
	if n == 1 {
		return bytes.Clone(first), true, nil
	}
	parts := make([][]byte, n)
	parts[0] = first
	err = parallel(ctx, n-1, func(ctx context.Context, i int) error {
		e, ok, err := s.get(ctx, kv, key+"."+strconv.Itoa(i+1))
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("value %s: part %d of %d is missing", key, i+1, n)
		}
		parts[i+1] = e.Value()
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	return bytes.Join(parts, nil), true, nil
}

// kvParallelism bounds the requests one call keeps in flight.
const kvParallelism = 32

// parallel runs fn(0) … fn(n-1) on up to kvParallelism goroutines and
// returns the first error.
func parallel(ctx context.Context, n int, fn func(ctx context.Context, i int) error) error {
	if n == 1 {
		return fn(ctx, 0)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		next  int
	)
	for range min(n, kvParallelism) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				stop := first != nil
				mu.Unlock()
				if i >= n || stop {
					return
				}
				if err := fn(ctx, i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
						cancel()
					}
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	return first
}

// ---- writes ----

// pipeline publishes many messages asynchronously, keeping a bounded
// number unacknowledged, and reports the first failure. Nothing it writes
// counts until wait has returned nil.
type pipeline struct {
	js      jetstream.JetStream
	pending []jetstream.PubAckFuture
	weights []int // records each pending message completes (see progress)
	err     error
	// progress, if set, is called with the number of records whose
	// messages were acknowledged since its last call.
	progress func(records int)
}

// pipelineWindow is how many publishes a pipeline keeps unacknowledged:
// below nats.go's default async limit (4,000), so that it never stalls.
const pipelineWindow = 1024

func (s *jetstreamStore) pipeline() *pipeline { return &pipeline{js: s.js} }

// put publishes data on subject subj (a KV key as $KV.<bucket>.<key>);
// its acknowledgement completes weight records for progress.
func (p *pipeline) put(ctx context.Context, subj string, data []byte, weight int) {
	if p.err != nil {
		return
	}
	if len(p.pending) >= pipelineWindow {
		p.drain(ctx, len(p.pending)/2)
		if p.err != nil {
			return
		}
	}
	f, err := p.js.PublishAsync(subj, data)
	if err != nil {
		p.err = err
		return
	}
	p.pending = append(p.pending, f)
	p.weights = append(p.weights, weight)
}

// drain waits for the oldest n acknowledgements.
func (p *pipeline) drain(ctx context.Context, n int) {
	records := 0
	for i, f := range p.pending[:n] {
		if p.err != nil {
			break
		}
		select {
		case <-f.Ok():
			records += p.weights[i]
		case err := <-f.Err():
			p.err = err
		case <-ctx.Done():
			p.err = ctx.Err()
		}
	}
	p.pending, p.weights = p.pending[n:], p.weights[n:]
	if p.progress != nil && records > 0 {
		p.progress(records)
	}
}

// wait waits for every acknowledgement; nil means all is stored.
func (p *pipeline) wait(ctx context.Context) error {
	p.drain(ctx, len(p.pending))
	return p.err
}

// putLarge queues value under key of bucket: in one message with a small
// header if it fits in part bytes, else as key (header and first part),
// key.1, key.2… Its last part completes weight records.
func (s *jetstreamStore) putLarge(ctx context.Context, p *pipeline, bucket, key string, value []byte, weight int) {
	n := max(1, (len(value)+s.part-1)/s.part)
	head := binary.AppendUvarint([]byte{largeVersion}, uint64(n))
	first := value[:min(len(value), s.part)]
	w := func(i int) int {
		if i == n-1 {
			return weight
		}
		return 0
	}
	p.put(ctx, subject(bucket, key), append(head, first...), w(0))
	for i := 1; i < n; i++ {
		p.put(ctx, subject(bucket, key+"."+strconv.Itoa(i)), value[i*s.part:min(len(value), (i+1)*s.part)], w(i))
	}
}

// purgeData removes from the data bucket, without leaving markers, the
// values under the key filter key and their parts (key.>): the cleanup of
// data no document names.
func (s *jetstreamStore) purgeData(ctx context.Context, key string) error {
	for _, filter := range []string{key, key + ".>"} {
		if err := s.dataStream.Purge(ctx, jetstream.WithPurgeSubject(subject(s.buckets.data, filter))); err != nil {
			return err
		}
	}
	return nil
}

// batchAck is the answer to the commit of an atomic batch publish.
type batchAck struct {
	Stream string `json:"stream"`
	Seq    uint64 `json:"seq"`
	Batch  string `json:"batch"`
	Count  int    `json:"count"`
	Error  *struct {
		Code        int    `json:"code"`
		ErrCode     uint16 `json:"err_code"`
		Description string `json:"description"`
	} `json:"error"`
}

// atomicCreate writes every message of msgs in one atomic batch publish
// (Nats-Batch-Id, Nats-Batch-Sequence, Nats-Batch-Commit), each with an
// expected last subject sequence of 0: all of them are stored, or, if any
// subject already has a message, none. It returns the stream sequence of
// the last message.
func (s *jetstreamStore) atomicCreate(ctx context.Context, msgs []*nats.Msg) (uint64, error) {
	id := newChangeID()
	for i, m := range msgs {
		if m.Header == nil {
			m.Header = nats.Header{}
		}
		m.Header.Set("Nats-Batch-Id", id)
		m.Header.Set("Nats-Batch-Sequence", strconv.Itoa(i+1))
		m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, "0")
		if i < len(msgs)-1 {
			if err := s.nc.PublishMsg(m); err != nil {
				return 0, err
			}
			continue
		}
		m.Header.Set("Nats-Batch-Commit", "1")
	}
	resp, err := s.nc.RequestMsgWithContext(ctx, msgs[len(msgs)-1])
	if err != nil {
		return 0, err
	}
	var ack batchAck
	if err := json.Unmarshal(resp.Data, &ack); err != nil {
		return 0, fmt.Errorf("atomic batch publish: bad answer %q: %w", resp.Data, err)
	}
	if ack.Error != nil {
		return 0, &jetstream.APIError{Code: ack.Error.Code, ErrorCode: jetstream.ErrorCode(ack.Error.ErrCode), Description: ack.Error.Description}
	}
	if ack.Count != len(msgs) {
		return 0, fmt.Errorf("atomic batch publish: %d of %d messages stored", ack.Count, len(msgs))
	}
	return ack.Seq, nil
}

// nanos is t as the Unix nanoseconds a value stores; the zero time is
// stored as now.
func nanos(t time.Time) int64 {
	if t.IsZero() {
		t = time.Now()
	}
	return t.UnixNano()
}

// fromNanos is the time of a stored Unix nanoseconds value, in UTC.
func fromNanos(n int64) time.Time { return time.Unix(0, n).UTC() }
