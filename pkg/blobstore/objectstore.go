package blobstore

// The Object Store backend keeps blobs in a JetStream Object Store bucket, so
// that several servers share them and no blob lives on one disk only.
//
// # Layout
//
// The bucket is a standard JetStream Object Store (ADR-20): the stream
// OBJ_<bucket> holds the chunks of an object on $O.<bucket>.C.<nuid> and its
// metadata (an ObjectInfo in JSON, with size, chunk count and SHA-256) as the
// last message on $O.<bucket>.M.<base64url(name)>. A blob's object name is
// its id. The objects are ordinary Object Store objects: nats.go's
// ObjectStore.Get and the nats CLI read them, and this store reads objects
// they wrote.
//
// # How Put names an object it has not finished reading
//
// The id is the SHA-256 of the content and is known only after the last
// byte, and an object store cannot rename. Put therefore writes the object
// itself, in the format above, instead of calling nats.go's ObjectStore.Put:
//
//  1. The chunks are published to a fresh nuid subject as the reader is
//     consumed, at most putWindow chunks unacknowledged, while the SHA-256
//     is computed and the size limit enforced. Nothing refers to these
//     chunks yet, so no reader can see them.
//  2. At the end the digest is known: on a size or digest failure the chunk
//     subject is purged and nothing was ever visible.
//  3. Otherwise the metadata is published under the name <id>, with the
//     expected last sequence of that metadata subject as a condition
//     (compare-and-set, like a KV create). That single message makes the
//     complete object appear at once. If the condition fails because
//     another Put stored the same content first, this Put purges its own
//     chunks and succeeds with the stored copy.
//
// nats.go's ObjectStore.Put fixes the name before the first byte and
// publishes the metadata unconditionally, last writer wins: two concurrent
// uploads of the same content would each write their chunks and the first
// one's could stay behind, unreferenced, for ever, and an upload of content
// that already exists replaces the object and purges the chunks a concurrent
// download is still reading. Uploading under a temporary name and renaming
// with UpdateMeta (check, then publish, then purge the old name) has the
// same unconditional step. The compare-and-set above has neither problem and
// also serves uploads that do not announce their digest. When the digest is
// announced and the blob is already stored, Put only reads and verifies the
// body (the uploader must still prove it has the bytes) and writes nothing.
//
// # Reads
//
// Open reads the metadata, then the chunks through an ordered pull consumer
// that asks for at most readAhead chunks at a time, so a slow reader holds
// at most readAhead chunks in memory. (nats.go's ObjectStore.Get uses a push
// consumer whose flow-control window grows up to 32 MiB, which a slow reader
// ends up buffering: 13 MiB were measured for a 20 MiB blob read slowly,
// against under 1 MiB here.) The reader hashes what it returns and, at the
// end, fails instead of returning io.EOF unless the size and SHA-256 match
// the id: a damaged or truncated object is never passed off as complete.
//
// # Crashes
//
// The metadata is always the last message of an upload, here as in
// nats.go. A crash in the middle leaves chunks that no metadata refers to:
// invisible to Open, Has and List, but taking space. NewObjectStore removes
// such chunks once they are an hour old (Sweep), as New does with leftover
// temporary files. A crash of a Delete between its two steps (a deletion
// marker for the metadata, then a purge of the chunks) leaves the same kind
// of unreferenced chunks. Durability of acknowledged writes follows the
// JetStream server's sync settings and the bucket's replicas.

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// DefaultBucket is the Object Store bucket used when ObjectConfig.Bucket is
// empty.
const DefaultBucket = "unibus_blobs"

// ErrCorrupt reports a stored blob whose bytes do not match its id, size
// or chunk count. It is returned by a read of an Object Store blob, at the
// end of the content at the latest.
var ErrCorrupt = errors.New("blobstore: stored blob is damaged")

const (
	// chunkSize is the size of the chunks Put writes; it is nats.go's
	// default and well under the default 1 MiB message limit.
	chunkSize = 128 << 10
	// putWindow bounds the chunks of one Put published but not yet
	// acknowledged, and so the memory one upload holds.
	putWindow = 8
	// readAhead bounds the chunks one reader has requested but not yet
	// returned, and so the memory one download holds.
	readAhead = 4
	// ackTimeout bounds the wait for one acknowledgement or one chunk; it
	// leaves room for a JetStream leader election.
	ackTimeout = 30 * time.Second
	// cleanupTimeout bounds the purges and deletions done after a failure,
	// which run even when the caller's context is done.
	cleanupTimeout = 10 * time.Second
	// casAttempts bounds the retries of the metadata compare-and-set; a
	// retry only happens when another writer changed the name meanwhile.
	casAttempts = 10
	// chunkPoll is how often a reader waiting for a chunk checks that the
	// blob was not deleted meanwhile.
	chunkPoll = time.Second
	// consumerIdle is how long the server keeps the consumer of an
	// abandoned reader (one whose process died before Close).
	consumerIdle = 2 * time.Minute
)

// ObjectConfig configures an ObjectStore.
type ObjectConfig struct {
	// Bucket is the Object Store bucket; empty means DefaultBucket.
	Bucket string
	// Replicas is how many servers keep every blob when the bucket is
	// created; 0 means 1. An existing bucket keeps its own setting (a
	// difference from a Replicas above 0 is logged): nothing here changes
	// the replicas of an existing bucket.
	Replicas int
	// Logger receives housekeeping messages; nil discards them.
	Logger *slog.Logger
}

// ObjectStore keeps blobs in a JetStream Object Store bucket. It is safe for
// concurrent use, also by several processes sharing the bucket.
type ObjectStore struct {
	js     jetstream.JetStream
	obs    jetstream.ObjectStore
	stream jetstream.Stream
	bucket string
	log    *slog.Logger

	// beforeMeta, when set (by tests), runs between reading a name's
	// metadata and the conditional publish that replaces it.
	beforeMeta func(id string)
}

// NewObjectStore opens the bucket cfg.Bucket, creating it (file storage,
// cfg.Replicas copies) when it does not exist, and removes the chunks of
// uploads abandoned more than an hour ago (see Sweep; this reads the
// metadata of every blob once).
func NewObjectStore(ctx context.Context, js jetstream.JetStream, cfg ObjectConfig) (*ObjectStore, error) {
	if js == nil {
		return nil, errors.New("blobstore: no JetStream context; connect to NATS first")
	}
	bucket := cfg.Bucket
	if bucket == "" {
		bucket = DefaultBucket
	}
	replicas := cfg.Replicas
	if replicas < 0 {
		return nil, fmt.Errorf("blobstore: %d replicas; use 1 or more (0 means 1)", replicas)
	}
	if replicas == 0 {
		replicas = 1
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}

	obs, err := js.ObjectStore(ctx, bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		obs, err = js.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{
			Bucket:      bucket,
			Description: "unibus encrypted blobs, named by the SHA-256 of their bytes",
			Storage:     jetstream.FileStorage,
			Replicas:    replicas,
		})
		if errors.Is(err, jetstream.ErrBucketExists) {
			// Created meanwhile by another server, with another config.
			obs, err = js.ObjectStore(ctx, bucket)
		}
		if err == nil {
			log.Info("blobstore: created object store bucket", slog.String("bucket", bucket), slog.Int("replicas", replicas))
		}
	}
	if err != nil {
		return nil, fmt.Errorf("blobstore: open object store bucket %q: %w; check that JetStream is enabled and reachable", bucket, err)
	}
	stream, err := js.Stream(ctx, streamName(bucket))
	if err != nil {
		return nil, fmt.Errorf("blobstore: open the stream of bucket %q: %w", bucket, err)
	}
	if sc := stream.CachedInfo().Config; (cfg.Replicas != 0 && sc.Replicas != replicas) || sc.Storage != jetstream.FileStorage {
		log.Warn("blobstore: existing bucket differs from the requested settings; it keeps its own: change its replicas with `membershipd cluster replicas N`",
			slog.String("bucket", bucket), slog.Int("replicas", sc.Replicas), slog.Int("want_replicas", replicas),
			slog.String("storage", sc.Storage.String()))
	}

	s := &ObjectStore{js: js, obs: obs, stream: stream, bucket: bucket, log: log}
	if n, err := s.Sweep(ctx, staleTempAge); err != nil {
		log.Warn("blobstore: cannot remove abandoned uploads; the next start tries again", slog.String("bucket", bucket), slog.Any("err", err))
	} else if n > 0 {
		log.Info("blobstore: removed abandoned uploads", slog.String("bucket", bucket), slog.Int("uploads", n))
	}
	return s, nil
}

// Bucket returns the name of the Object Store bucket.
func (s *ObjectStore) Bucket() string { return s.bucket }

func streamName(bucket string) string { return "OBJ_" + bucket }

func (s *ObjectStore) chunkPrefix() string { return "$O." + s.bucket + ".C." }

func (s *ObjectStore) chunkSubject(nuid string) string { return s.chunkPrefix() + nuid }

func (s *ObjectStore) metaSubject(name string) string {
	return "$O." + s.bucket + ".M." + base64.URLEncoding.EncodeToString([]byte(name))
}

// objectDigest renders a SHA-256 the way Object Store metadata carries it.
func objectDigest(sum []byte) string {
	return "SHA-256=" + base64.URLEncoding.EncodeToString(sum)
}

// digestMatches reports whether an Object Store digest is the SHA-256 whose
// hex form is id.
func digestMatches(digest, id string) bool {
	got, err := jetstream.DecodeObjectDigest(digest)
	return err == nil && hex.EncodeToString(got) == id
}

// newNUID returns a fresh, unguessable chunk subject token.
func newNUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// isWrongLastSequence reports a failed compare-and-set.
func isWrongLastSequence(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) &&
		(apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// Put streams r into the bucket and returns the blob's id (hex SHA-256) and
// size, with the semantics of Backend.Put. See the comment at the top of
// this file for how the object gets its name.
func (s *ObjectStore) Put(ctx context.Context, r io.Reader, maxBytes int64, wantSHA256 string) (id string, size int64, err error) {
	src, err := putSource(ctx, r, maxBytes, wantSHA256)
	if err != nil {
		return "", 0, err
	}

	if wantSHA256 != "" {
		stored, err := s.live(ctx, wantSHA256)
		if err != nil {
			return "", 0, err
		}
		if stored != nil {
			// Already stored: only read and verify the body.
			return hashCopy(io.Discard, src, maxBytes, wantSHA256)
		}
	}

	up := &upload{s: s, nuid: newNUID()}
	size, sum, err := up.send(ctx, src, maxBytes)
	if err != nil {
		up.abort()
		return "", 0, err
	}
	id = hex.EncodeToString(sum)
	if wantSHA256 != "" && id != wantSHA256 {
		up.abort()
		return "", 0, errDigestMismatch(id, wantSHA256)
	}
	if err := up.checkChunks(ctx); err != nil {
		up.abort()
		return "", 0, err
	}
	if err := up.commit(ctx, id, size, sum); err != nil {
		return "", 0, err
	}
	return id, size, nil
}

// upload is one Put's chunks on their own subject.
type upload struct {
	s       *ObjectStore
	nuid    string
	chunks  uint32
	pending []jetstream.PubAckFuture // unacknowledged, oldest first
}

// slot is a chunk buffer and the publish that still refers to it.
type slot struct {
	buf []byte
	fut jetstream.PubAckFuture
}

// send publishes src as chunks, at most putWindow unacknowledged, and
// returns the size and SHA-256 once every chunk is acknowledged. A buffer is
// reused only after its chunk is acknowledged, because the client may
// republish an unacknowledged message.
func (u *upload) send(ctx context.Context, src io.Reader, maxBytes int64) (int64, []byte, error) {
	subj := u.s.chunkSubject(u.nuid)
	bufSize := int64(chunkSize)
	if maxBytes+1 < bufSize {
		bufSize = maxBytes + 1
	}
	slots := make([]slot, putWindow)
	h := sha256.New()
	var size int64
	for i := 0; ; i = (i + 1) % len(slots) {
		sl := &slots[i]
		if sl.fut != nil {
			if err := waitAck(ctx, sl.fut); err != nil {
				return 0, nil, err
			}
			u.pending = u.pending[1:]
			sl.fut = nil
		}
		if sl.buf == nil {
			sl.buf = make([]byte, bufSize)
		}
		n, rerr := io.ReadFull(src, sl.buf)
		if n > 0 {
			size += int64(n)
			if size > maxBytes {
				return 0, nil, errTooLarge(maxBytes)
			}
			h.Write(sl.buf[:n])
			fut, err := u.s.js.PublishMsgAsync(&nats.Msg{Subject: subj, Data: sl.buf[:n]})
			if err != nil {
				return 0, nil, fmt.Errorf("blobstore: publish chunk: %w", err)
			}
			sl.fut = fut
			u.pending = append(u.pending, fut)
			u.chunks++
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			return 0, nil, fmt.Errorf("blobstore: copy blob: %w", rerr)
		}
	}
	for len(u.pending) > 0 {
		if err := waitAck(ctx, u.pending[0]); err != nil {
			return 0, nil, err
		}
		u.pending = u.pending[1:]
	}
	return size, h.Sum(nil), nil
}

// waitAck waits for one chunk's acknowledgement.
func waitAck(ctx context.Context, fut jetstream.PubAckFuture) error {
	t := time.NewTimer(ackTimeout)
	defer t.Stop()
	select {
	case <-fut.Ok():
		return nil
	case err := <-fut.Err():
		return fmt.Errorf("blobstore: store chunk: %w", err)
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return fmt.Errorf("blobstore: store chunk: no acknowledgement within %s", ackTimeout)
	}
}

// checkChunks makes sure every chunk is still there before the metadata
// makes them visible: a Sweep removes chunks of uploads that look abandoned.
func (u *upload) checkChunks(ctx context.Context) error {
	if u.chunks == 0 {
		return nil
	}
	subj := u.s.chunkSubject(u.nuid)
	info, err := u.s.stream.Info(ctx, jetstream.WithSubjectFilter(subj))
	if err != nil {
		return fmt.Errorf("blobstore: check stored chunks: %w", err)
	}
	if got := info.State.Subjects[subj]; got != uint64(u.chunks) {
		return fmt.Errorf("blobstore: %d of %d chunks stored; the upload was removed as abandoned, upload again", got, u.chunks)
	}
	return nil
}

// commit publishes the metadata that makes the chunks the blob id, unless
// the blob is already stored, in which case the chunks are dropped.
func (u *upload) commit(ctx context.Context, id string, size int64, sum []byte) error {
	s := u.s
	info := jetstream.ObjectInfo{
		ObjectMeta: jetstream.ObjectMeta{Name: id, Opts: &jetstream.ObjectMetaOptions{ChunkSize: chunkSize}},
		Bucket:     s.bucket,
		NUID:       u.nuid,
		Size:       uint64(size),
		Chunks:     u.chunks,
		Digest:     objectDigest(sum),
	}
	data, err := json.Marshal(info)
	if err != nil {
		u.abort()
		return fmt.Errorf("blobstore: encode metadata: %w", err)
	}
	subj := s.metaSubject(id)
	for attempt := range casAttempts {
		cur, seq, err := s.lastMeta(ctx, id)
		if err != nil {
			u.abort()
			return err
		}
		if cur != nil && !cur.Deleted && digestMatches(cur.Digest, id) && cur.Size == uint64(size) {
			// Already stored, by an earlier or concurrent Put.
			u.abort()
			return nil
		}
		if s.beforeMeta != nil {
			s.beforeMeta(id)
		}
		msg := nats.NewMsg(subj)
		msg.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupSubject)
		msg.Data = data
		_, err = s.js.PublishMsg(ctx, msg, jetstream.WithExpectLastSequencePerSubject(seq))
		if err == nil {
			if cur != nil && !cur.Deleted && cur.NUID != "" {
				// A damaged or foreign object was replaced: drop its chunks.
				s.purgeChunks(cur.NUID)
			}
			return nil
		}
		if !isWrongLastSequence(err) {
			u.ambiguous(id, err)
			return fmt.Errorf("blobstore: store metadata: %w", err)
		}
		// The name changed since it was read; read it again. A replica
		// answering the read may lag behind the leader, so wait a little.
		if err := sleepCtx(ctx, time.Duration(attempt+1)*20*time.Millisecond); err != nil {
			u.abort()
			return err
		}
	}
	u.abort()
	return fmt.Errorf("blobstore: store metadata of %s: it kept changing during %d attempts; try again", id, casAttempts)
}

// ambiguous handles a metadata publish that failed without saying whether
// it was stored (a timeout, a lost connection): the chunks are purged only
// if the metadata is known not to refer to them.
func (u *upload) ambiguous(id string, pubErr error) {
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	cur, _, err := u.s.lastMeta(ctx, id)
	if err != nil {
		u.s.log.Warn("blobstore: upload outcome unknown; its chunks are left for the sweep",
			slog.String("blob", id), slog.Any("publish_err", pubErr), slog.Any("err", err))
		return
	}
	if cur == nil || cur.NUID != u.nuid {
		u.abort()
	}
}

// abort drops the upload's chunks, after waiting for the publishes still in
// flight so that none lands after the purge.
func (u *upload) abort() {
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	for _, fut := range u.pending {
		select {
		case <-fut.Ok():
		case <-fut.Err():
		case <-ctx.Done():
		}
	}
	u.pending = nil
	if u.chunks > 0 {
		u.s.purgeChunks(u.nuid)
	}
}

// purgeChunks removes the chunks on one nuid subject, logging failures: the
// sweep removes what is left.
func (s *ObjectStore) purgeChunks(nuid string) {
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	if err := s.stream.Purge(ctx, jetstream.WithPurgeSubject(s.chunkSubject(nuid))); err != nil {
		s.log.Warn("blobstore: cannot remove chunks; the sweep will", slog.String("nuid", nuid), slog.Any("err", err))
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// lastMeta returns the last metadata message stored under name (nil if
// none) and its sequence, the condition for replacing it.
func (s *ObjectStore) lastMeta(ctx context.Context, name string) (*jetstream.ObjectInfo, uint64, error) {
	m, err := s.stream.GetLastMsgForSubject(ctx, s.metaSubject(name))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("blobstore: read metadata: %w", err)
	}
	var info jetstream.ObjectInfo
	if err := json.Unmarshal(m.Data, &info); err != nil {
		// Unreadable metadata is replaced like a damaged object.
		return &jetstream.ObjectInfo{}, m.Sequence, nil
	}
	return &info, m.Sequence, nil
}

// live returns the metadata of a stored, readable blob, or nil when there
// is none. Links and objects whose digest is not their name do not count.
func (s *ObjectStore) live(ctx context.Context, id string) (*jetstream.ObjectInfo, error) {
	info, err := s.obs.GetInfo(ctx, id)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("blobstore: read metadata: %w", err)
	}
	if info.Deleted || (info.Opts != nil && info.Opts.Link != nil) || info.NUID == "" || !digestMatches(info.Digest, id) {
		return nil, nil
	}
	return info, nil
}

// Open returns the blob's content and size. The caller must close it. The
// content is fetched as it is read, within ctx, and checked against the id:
// a read fails with ErrCorrupt rather than returning io.EOF after bytes
// that do not hash to the id.
func (s *ObjectStore) Open(ctx context.Context, id string) (io.ReadCloser, int64, error) {
	if err := checkID(ctx, id); err != nil {
		return nil, 0, err
	}
	info, err := s.live(ctx, id)
	if err != nil {
		return nil, 0, err
	}
	if info == nil {
		return nil, 0, ErrNotFound
	}
	rd := &objectReader{ctx: ctx, s: s, id: id, nuid: info.NUID, size: int64(info.Size), chunks: info.Chunks, h: sha256.New()}
	if info.Chunks == 0 {
		return rd, rd.size, nil
	}
	cons, err := s.js.OrderedConsumer(ctx, streamName(s.bucket), jetstream.OrderedConsumerConfig{
		FilterSubjects:    []string{s.chunkSubject(info.NUID)},
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		InactiveThreshold: consumerIdle,
		MaxResetAttempts:  5,
	})
	if err != nil {
		return nil, 0, fmt.Errorf("blobstore: read blob: %w", err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(readAhead))
	if err != nil {
		return nil, 0, fmt.Errorf("blobstore: read blob: %w", err)
	}
	rd.cons, rd.it = cons, it
	// The consumer counts the chunks it will deliver: a blob with chunks
	// missing or added is refused before any byte is returned.
	if ci := cons.CachedInfo(); ci != nil && ci.NumPending != uint64(info.Chunks) {
		_ = rd.Close()
		if now, err := s.live(ctx, id); err == nil && (now == nil || now.NUID != info.NUID) {
			return nil, 0, ErrNotFound // deleted meanwhile
		}
		return nil, 0, fmt.Errorf("%w: blob %s has %d chunks stored, its metadata says %d", ErrCorrupt, id, ci.NumPending, info.Chunks)
	}
	return rd, rd.size, nil
}

// objectReader streams one blob's chunks and verifies them.
type objectReader struct {
	ctx    context.Context
	s      *ObjectStore
	id     string
	nuid   string
	size   int64
	chunks uint32
	cons   jetstream.Consumer
	it     jetstream.MessagesContext

	mu    sync.Mutex
	h     hash.Hash
	cur   []byte
	got   uint32
	read  int64
	err   error
	close sync.Once
}

// Read implements io.Reader.
func (r *objectReader) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for len(r.cur) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		if r.got == r.chunks {
			r.err = r.finish()
			return 0, r.err
		}
		r.err = r.next()
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}

// next fetches the next chunk into r.cur. While it waits, it checks every
// chunkPoll that the blob still exists, so that a blob deleted (its chunks
// purged) during the read fails the read promptly.
func (r *objectReader) next() error {
	deadline := time.Now().Add(ackTimeout)
	var msg jetstream.Msg
	for {
		ctx, cancel := context.WithTimeout(r.ctx, chunkPoll)
		m, err := r.it.Next(jetstream.NextContext(ctx))
		cancel()
		if err == nil {
			msg = m
			break
		}
		if e := r.ctx.Err(); e != nil {
			return e
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("blobstore: read blob %s: %w", r.id, err)
		}
		info, err := r.s.live(r.ctx, r.id)
		if err != nil {
			return err
		}
		if info == nil || info.NUID != r.nuid {
			return fmt.Errorf("%w: blob %s was deleted while it was read", ErrNotFound, r.id)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: blob %s: chunk %d of %d missing", ErrCorrupt, r.id, r.got+1, r.chunks)
		}
	}
	data := msg.Data()
	r.got++
	r.read += int64(len(data))
	if r.read > r.size {
		return fmt.Errorf("%w: blob %s has more than its %d bytes", ErrCorrupt, r.id, r.size)
	}
	if md, err := msg.Metadata(); err == nil && md.NumPending == 0 && r.got < r.chunks {
		return fmt.Errorf("%w: blob %s has %d of its %d chunks", ErrCorrupt, r.id, r.got, r.chunks)
	}
	r.h.Write(data)
	r.cur = data
	return nil
}

// finish checks the whole content once the last chunk has been returned.
func (r *objectReader) finish() error {
	if r.read != r.size {
		return fmt.Errorf("%w: blob %s has %d of its %d bytes", ErrCorrupt, r.id, r.read, r.size)
	}
	if got := hex.EncodeToString(r.h.Sum(nil)); got != r.id {
		return fmt.Errorf("%w: blob %s hashes to %s", ErrCorrupt, r.id, got)
	}
	return io.EOF
}

// Close stops the reads and removes the consumer from the server. A Read
// running concurrently returns an error.
func (r *objectReader) Close() error {
	r.close.Do(func() {
		if r.it != nil {
			r.it.Stop() // before taking mu: ends a Read waiting for a chunk
		}
		r.mu.Lock()
		r.err = errReadAfterClose
		r.cur = nil
		r.mu.Unlock()
		if r.it == nil {
			return
		}
		if ci := r.cons.CachedInfo(); ci != nil {
			ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
			defer cancel()
			err := r.s.js.DeleteConsumer(ctx, streamName(r.s.bucket), ci.Name)
			if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
				r.s.log.Debug("blobstore: cannot remove read consumer; the server drops it when idle",
					slog.String("consumer", ci.Name), slog.Any("err", err))
			}
		}
	})
	return nil
}

var errReadAfterClose = errors.New("blobstore: read after close")

// Delete removes the blob. Deleting a missing blob returns ErrNotFound.
func (s *ObjectStore) Delete(ctx context.Context, id string) error {
	if err := checkID(ctx, id); err != nil {
		return err
	}
	// obs.Delete marks a deleted object deleted again without an error;
	// GetInfo answers "not found" for it, as for a missing one.
	_, err := s.obs.GetInfo(ctx, id)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("blobstore: read metadata: %w", err)
	}
	if err := s.obs.Delete(ctx, id); err != nil {
		if errors.Is(err, jetstream.ErrObjectNotFound) {
			return ErrNotFound
		}
		return fmt.Errorf("blobstore: delete blob: %w", err)
	}
	return nil
}

// Has reports whether the blob is stored.
func (s *ObjectStore) Has(ctx context.Context, id string) (bool, error) {
	if err := checkID(ctx, id); err != nil {
		return false, err
	}
	info, err := s.live(ctx, id)
	return info != nil, err
}

// List returns the ids of all blobs in the bucket, in ascending order. It
// reads the metadata of every object once; objects whose name is not a blob
// id are ignored.
func (s *ObjectStore) List(ctx context.Context) ([]string, error) {
	var ids []string
	err := s.eachMeta(ctx, func(info *jetstream.ObjectInfo) {
		if ValidID(info.Name) && (info.Opts == nil || info.Opts.Link == nil) {
			ids = append(ids, info.Name)
		}
	})
	if err != nil {
		return nil, err
	}
	slices.Sort(ids)
	return ids, nil
}

// eachMeta calls fn with the current metadata of every object that is not
// deleted.
func (s *ObjectStore) eachMeta(ctx context.Context, fn func(*jetstream.ObjectInfo)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := s.obs.Watch(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return fmt.Errorf("blobstore: list objects: %w", err)
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case info, ok := <-w.Updates():
			if !ok {
				if err := ctx.Err(); err != nil {
					return err
				}
				return errors.New("blobstore: list objects: the watch ended early; try again")
			}
			if info == nil {
				return nil // all current entries delivered
			}
			fn(info)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Sweep removes the chunks of uploads that no metadata refers to and whose
// last chunk is older than olderThan: uploads abandoned by a crash, and
// deletions interrupted between their two steps. It returns how many such
// uploads it removed. An upload still running writes a chunk at least every
// few seconds and is not touched; one whose reader stalls for longer than
// olderThan is removed and its Put fails instead of storing a partial blob.
func (s *ObjectStore) Sweep(ctx context.Context, olderThan time.Duration) (int, error) {
	orphans, err := s.unreferencedChunks(ctx)
	if err != nil {
		return 0, err
	}
	cutoff := time.Now().Add(-olderThan)
	removed := 0
	for _, nuid := range orphans {
		m, err := s.stream.GetLastMsgForSubject(ctx, s.chunkSubject(nuid))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return removed, fmt.Errorf("blobstore: read chunk: %w", err)
		}
		if m.Time.After(cutoff) {
			continue
		}
		if err := s.stream.Purge(ctx, jetstream.WithPurgeSubject(s.chunkSubject(nuid))); err != nil {
			return removed, fmt.Errorf("blobstore: remove abandoned chunks: %w", err)
		}
		removed++
	}
	return removed, nil
}

// unreferencedChunks returns the nuids of chunk subjects that no current
// metadata refers to, in ascending order.
func (s *ObjectStore) unreferencedChunks(ctx context.Context) ([]string, error) {
	prefix := s.chunkPrefix()
	// Chunk subjects first, metadata second: an upload that completes in
	// between is then seen as referenced.
	si, err := s.stream.Info(ctx, jetstream.WithSubjectFilter(prefix+">"))
	if err != nil {
		return nil, fmt.Errorf("blobstore: list chunks: %w", err)
	}
	if len(si.State.Subjects) == 0 {
		return nil, nil
	}
	referenced := make(map[string]bool)
	if err := s.eachMeta(ctx, func(info *jetstream.ObjectInfo) { referenced[info.NUID] = true }); err != nil {
		return nil, err
	}
	var out []string
	for subj := range si.State.Subjects {
		nuid := strings.TrimPrefix(subj, prefix)
		if !referenced[nuid] {
			out = append(out, nuid)
		}
	}
	slices.Sort(out)
	return out, nil
}
