package client

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/e2ee"
	"github.com/enmanuel/unibus/pkg/roomchain"
)

// Message is what a sender puts in a room: text, a file, or both.
type Message struct {
	Text string
	File *FileRef
}

// FileRef describes an attached file. It travels inside the encrypted
// message, so Key is only ever seen by the room's members.
type FileRef struct {
	Name string `json:"name"`
	Size int64  `json:"size"`
	Blob string `json:"blob"`
	Key  []byte `json:"key"`
}

// payload is the plaintext inside an envelope (docs/envelope.md). Head is
// the sender's verified head of the room's membership history, so that two
// members shown different histories by the server find out as soon as one
// reads the other's message.
type payload struct {
	Text string   `json:"text,omitempty"`
	File *FileRef `json:"file,omitempty"`
	Head *head    `json:"head,omitempty"`
}

type head struct {
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
}

// Received is one message as read from a room. When Err is set the message
// could not be shown (bad signature, not a member at that epoch, no key):
// Text and File are empty.
type Received struct {
	ID         string
	Room       string
	Epoch      uint64
	Sender     string // user key, U…
	SenderName string
	Time       time.Time
	Text       string
	File       *FileRef
	Seq        uint64 // position in the room's history
	Err        error
}

// Send seals msg into the room's current epoch and publishes it. It returns
// once JetStream has stored the message, with the message id. A publish
// that is not acknowledged (the connection moving to another node, the
// history electing a leader) is sent again, and stored once, until the
// client's Timeout; past it Send fails with [ErrNotStored].
func (c *Client) Send(ctx context.Context, roomRef string, msg Message) (string, error) {
	id, err := c.ResolveRoom(ctx, roomRef)
	if err != nil {
		return "", err
	}
	if err := c.connectNATS(ctx); err != nil {
		return "", err
	}
	env, msgID, err := c.sealMessage(ctx, id, msg, nil)
	if err != nil {
		return "", err
	}
	if err := c.publish(ctx, api.RoomSubject(id), env, msgID); err != nil {
		return "", fmt.Errorf("publish to room %s: %w", id, err)
	}
	return msgID, nil
}

// sealMessage makes the envelope of msg for room id at its current epoch (after
// rekeying revoked members out), signed by the caller.
//
// The plaintext is built in *scratch when given (and kept there, grown, for
// the next message): it is sealed into the envelope and not needed after.
func (c *Client) sealMessage(ctx context.Context, id string, msg Message, scratch *[]byte) ([]byte, string, error) {
	snap, err := c.snapshot(ctx, id)
	if err != nil {
		return nil, "", err
	}
	if snap.mustRekey() {
		// A revoked user still holds the current key, and a member that
		// left made it: rekey first, so that neither can read this
		// message even with what it kept.
		if _, err := c.rekey(ctx, snap, nil); err != nil && !api.IsCode(err, api.CodeConflict) {
			return nil, "", fmt.Errorf("rekey room %s to shut out revoked or departed members before sending: %w", id, err)
		}
		if snap, err = c.refreshRoom(ctx, id); err != nil {
			return nil, "", err
		}
		if snap.mustRekey() {
			return nil, "", fmt.Errorf("room %s still has revoked members, or a key made by a member that left, after a rekey: try again", id)
		}
	}
	var buf []byte
	if scratch != nil {
		buf = (*scratch)[:0]
	}
	plain := appendPayload(buf, &payload{Text: msg.Text, File: msg.File, Head: &head{Seq: snap.chain.Seq, Hash: snap.chain.Head}})
	if scratch != nil && cap(plain) <= maxKeptBuffer {
		*scratch = plain
	}
	if len(plain) > e2ee.MaxPlaintext {
		return nil, "", fmt.Errorf("message of %d bytes is over the limit of %d: send it as a file with --file", len(plain), e2ee.MaxPlaintext)
	}
	h := e2ee.Header{Version: e2ee.EnvelopeVersion, Cleartext: !snap.room.Encrypted, Room: id, Epoch: snap.room.Epoch, Sender: c.selfPK, Time: c.now().UnixNano()}
	if _, err := rand.Read(h.ID[:]); err != nil {
		return nil, "", err
	}
	var key *e2ee.RoomKey
	if snap.room.Encrypted {
		if key = snap.keys[snap.room.Epoch]; key == nil {
			return nil, "", fmt.Errorf("room %s: you hold no key for its current epoch %d; ask a member to rekey", id, snap.room.Epoch)
		}
	}
	env, err := e2ee.AppendSeal(nil, h, key, plain, c.id.SigningKey(), rand.Reader)
	if err != nil {
		return nil, "", err
	}
	if max := c.nc.MaxPayload(); int64(len(env)) > max {
		return nil, "", fmt.Errorf("message of %d bytes is over the bus limit of %d: send it as a file with --file", len(env), max)
	}
	return env, h.MessageID(), nil
}

// Stream sends many messages to one room without waiting for each to be
// stored: up to MaxInFlight are acknowledged in the background. Flush
// waits for all of them and reports the first failure: a refusal, or an
// acknowledgement lost with the connection or not come within the
// client's Timeout. Unlike Send, a Stream does not retry a message whose
// acknowledgement did not come (a caller that sends it again sends a new
// message). A Stream is for one goroutine at a time.
type Stream struct {
	c       *Client
	room    string
	pending []jetstream.PubAckFuture
	plain   []byte // the plaintext of the message being sealed
}

// MaxInFlight bounds the messages a Stream has sent and not yet seen
// acknowledged.
const MaxInFlight = 4096

// OpenStream returns a Stream to the room.
func (c *Client) OpenStream(ctx context.Context, roomRef string) (*Stream, error) {
	id, err := c.ResolveRoom(ctx, roomRef)
	if err != nil {
		return nil, err
	}
	if err := c.connectNATS(ctx); err != nil {
		return nil, err
	}
	if _, err := c.snapshot(ctx, id); err != nil {
		return nil, err
	}
	return &Stream{c: c, room: id}, nil
}

// Send seals msg and publishes it, returning its id without waiting for
// the acknowledgement (Flush reports failures).
func (s *Stream) Send(ctx context.Context, msg Message) (string, error) {
	env, msgID, err := s.c.sealMessage(ctx, s.room, msg, &s.plain)
	if err != nil {
		return "", err
	}
	if len(s.pending) >= MaxInFlight {
		if err := s.Flush(ctx); err != nil {
			return "", err
		}
	}
	// No Nats-Msg-Id: a Stream does not send a message twice, and
	// JetStream's duplicate tracking would keep an entry per message for
	// the stream's duplicate window (about 12 % of end-to-end throughput
	// at 25,000 messages a second; BENCHMARKS.md).
	f, err := s.c.js.PublishAsync(api.RoomSubject(s.room), env)
	if err != nil {
		return "", fmt.Errorf("publish to room %s: %w", s.room, err)
	}
	s.pending = append(s.pending, f)
	return msgID, nil
}

// Flush waits until every message sent so far is acknowledged, and returns
// the first failure.
func (s *Stream) Flush(ctx context.Context) error {
	var first error
	for _, f := range s.pending {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			if first == nil {
				first = fmt.Errorf("publish to room %s: %w", s.room, err)
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	s.pending = s.pending[:0]
	return first
}

// retryablePublish tells a lost publish or acknowledgement, worth sending
// again, from a refusal: the connection dropped (nats.go fails the
// acknowledgements it was waiting for with ErrDisconnected), no stream
// answered (a leader being elected), no acknowledgement came within the
// client's Timeout, or nats.go could not take the publish just now (too
// many waiting for their acknowledgement, its reconnect buffer full), or
// a copy sent before is being stored.
func retryablePublish(err error) bool {
	if inProcess(err) {
		return true
	}
	for _, e := range []error{nats.ErrDisconnected, jetstream.ErrNoStreamResponse, nats.ErrNoResponders, jetstream.ErrAsyncPublishTimeout, jetstream.ErrTooManyStalledMsgs, nats.ErrReconnectBufExceeded} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// errCodeInProcess is nats-server's JSStreamDuplicateMessageConflict:
// on a cluster, a copy of a message whose id the stream's leader has
// proposed and not yet stored is answered 409 "duplicate message id is in
// process". The earlier copy's acknowledgement, or that of a copy sent
// after it is stored (a duplicate), tells the outcome.
const errCodeInProcess jetstream.ErrorCode = 10158

// inProcess tells the answer to a copy sent while an earlier one is being
// stored.
func inProcess(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeInProcess
}

// ErrNotStored reports a message the history did not acknowledge in time:
// it may or may not have been stored. Sending it again with Send makes a
// new message.
var ErrNotStored = errors.New("message not stored")

// errNoAck is why a copy is sent again when none of those sent was
// answered in time.
var errNoAck = errors.New("no acknowledgement")

// publishAttempt bounds the wait for the acknowledgement of a message's
// first copy; resendEvery is how often a copy is sent after that while no
// acknowledgement comes (a history stream that lost its leader elects
// another within 4 to 9 s, nats-server's fixed Raft election timeout).
const (
	publishAttempt = time.Second
	resendEvery    = 250 * time.Millisecond
)

// publish stores env in the room's history and waits for the
// acknowledgement, sending the message again when none comes until ctx
// ends or the client's Timeout has passed: on an enforcing bus a
// membership change closes the connection so that it reopens with new
// permissions, and in a cluster the connection moves to another node when
// its own goes, or the history elects a new leader; a publish caught in
// between is lost. A copy whose connection drops is sent again at once
// (nats.go holds it until the connection is back, on this node or
// another); when the first copy has gone unanswered for publishAttempt,
// another is sent every resendEvery, and the acknowledgement of any copy
// ends the wait. Every copy carries the same message id, which JetStream
// deduplicates (within its duplicate window, two minutes, acknowledging a
// duplicate as stored), so a message is stored once however often it is
// sent; a copy that reaches a clustered stream while an earlier one is
// being stored is answered "in process", and another follows after
// resendEvery. A refusal (any other error from the stream) is returned as
// it is.
func (c *Client) publish(ctx context.Context, subject string, env []byte, msgID string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	giveUp := time.Now().Add(c.timeout)
	// One goroutine per copy sent passes its outcome to answers; all stop
	// when publish returns. nats.go forgets an unanswered copy when the
	// connection drops or after the client's Timeout
	// (jetstream.WithPublishAsyncTimeout), so copies given up on do not
	// hold places among the MaxInFlight it keeps for acknowledgements.
	done := make(chan struct{})
	defer close(done)
	answers := make(chan error)
	send := func() error {
		f, err := c.js.PublishAsync(subject, env, jetstream.WithMsgID(msgID))
		if err != nil {
			return err
		}
		go func() {
			var err error
			select {
			case <-f.Ok():
			case err = <-f.Err():
			case <-done:
				return
			}
			select {
			case answers <- err:
			case <-done:
			}
		}()
		return nil
	}
	timer := time.NewTimer(publishAttempt)
	defer timer.Stop()
	wait := publishAttempt
	var (
		last    error = errNoAck // why the last copy was sent again
		copies  int              // copies sent
		waiting int              // copies sent and not answered
	)
	for {
		err := send()
		switch {
		case err == nil:
			copies++
			waiting++
			timer.Reset(min(wait, time.Until(giveUp)))
		case !retryablePublish(err):
			return err
		default:
			// nats.go could not take it just now: try again shortly.
			last = err
			timer.Reset(min(50*time.Millisecond, time.Until(giveUp)))
		}
		for again := false; !again; {
			select {
			case answer := <-answers:
				if answer == nil {
					return nil
				}
				waiting--
				switch {
				case inProcess(answer):
					// An earlier copy is being stored: wait a little
					// for its acknowledgement, then send another,
					// which will be acknowledged as a duplicate.
					last, wait = answer, resendEvery
					timer.Reset(min(resendEvery, time.Until(giveUp)))
				case !retryablePublish(answer):
					return answer
				default:
					// A dropped connection fails every copy waiting
					// on it: send one copy again, at once, when none
					// is left.
					last, again = answer, waiting == 0
				}
			case <-timer.C:
				if err == nil {
					// The copy just sent went unanswered.
					last, wait = errNoAck, resendEvery
				}
				again = true
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if !time.Now().Before(giveUp) {
			return fmt.Errorf("%w: the history did not acknowledge the message within %s (last: %v); its stream may have lost most of its nodes: check them, or raise --timeout", ErrNotStored, c.timeout, last)
		}
		c.log.Debug("publish not acknowledged; sending it again", "subject", subject, "copies", copies, "err", last)
	}
}

// ReadOptions selects what Read delivers.
type ReadOptions struct {
	// Last limits history to the last N messages; 0 means all.
	Last int
	// Follow keeps delivering new messages after the history until ctx ends.
	Follow bool
}

// Read delivers the room's history in order, then, with Follow, live
// messages, to fn. It stops at the first error fn returns, or when ctx ends
// (returning nil for a followed read ended by its context).
func (c *Client) Read(ctx context.Context, roomRef string, opts ReadOptions, fn func(Received) error) error {
	id, err := c.ResolveRoom(ctx, roomRef)
	if err != nil {
		return err
	}
	if opts.Last < 0 {
		return errors.New("--last must be 0 or more")
	}
	if err := c.connectNATS(ctx); err != nil {
		return err
	}
	if _, err := c.snapshot(ctx, id); err != nil {
		return err
	}
	r, err := c.openReader(ctx, id, 0)
	if err != nil {
		return err
	}
	defer r.close()
	r.retry = opts.Follow
	if r.info.LastSeq == 0 && !opts.Follow {
		return nil
	}
	return c.deliver(ctx, id, r, opts, fn)
}

// pending is a message being opened by a worker; done is closed when r is
// ready.
type pending struct {
	r    Received
	data []byte
	done chan struct{}
}

// maxBatch bounds the messages a worker opens together, checking their
// signatures as one batch (e2ee.BatchVerifier: about half the cost of one
// at a time for 64). A worker takes what is waiting, up to maxBatch, so a
// message that arrives alone is opened alone, at once.
const maxBatch = 64

// maxKeptBuffer bounds the envelope buffers a worker keeps from batch to
// batch: maxBatch of them, so at most 4 MiB a worker.
const maxKeptBuffer = 64 << 10

// deliver reads the consumer and hands fn the opened messages in order.
// Opening (signature check and decryption, the costly part) is spread over
// the machine's cores, in batches when messages queue up; a reorder queue
// keeps the room's order.
func (c *Client) deliver(ctx context.Context, id string, rd *reader, opts ReadOptions, fn func(Received) error) error {
	lastSeq := rd.info.LastSeq
	// The reader goroutine stops when fn fails or the read ends.
	readCtx, stopReading := context.WithCancel(ctx)
	defer stopReading()
	workers := runtime.GOMAXPROCS(0)
	work := make(chan *pending, maxBatch*workers)
	queue := make(chan *pending, 2*maxBatch*workers)
	readErr := make(chan error, 1)
	quit := make(chan struct{})
	defer close(quit)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := newOpener(c, id)
			batch := make([]*pending, 0, maxBatch)
			for p := range work {
				batch = append(batch[:0], p)
			fill:
				for len(batch) < maxBatch {
					select {
					case q, ok := <-work:
						if !ok {
							break fill
						}
						batch = append(batch, q)
					default:
						break fill
					}
				}
				o.open(ctx, batch)
			}
		}()
	}
	// The reader: one goroutine, in stream order, into both the workers'
	// channel and the ordered queue.
	go func() {
		defer func() { close(work); wg.Wait(); close(queue) }()
		skip := uint64(0)
		first := true
		for {
			m, err := rd.nextMsg(readCtx)
			if err != nil {
				switch {
				case ctx.Err() != nil && opts.Follow:
					err = nil
				case ctx.Err() != nil:
					err = ctx.Err()
				case readCtx.Err() != nil:
					err = nil // fn failed: its error is returned
				}
				readErr <- err
				return
			}
			if first && opts.Last > 0 && m.pending+1 > uint64(opts.Last) {
				skip = m.pending + 1 - uint64(opts.Last)
			}
			first = false
			if skip > 0 {
				skip--
			} else {
				p := &pending{r: Received{Seq: m.seq}, data: m.data, done: make(chan struct{})}
				select {
				case queue <- p:
				case <-quit:
					return
				}
				work <- p
			}
			if !opts.Follow && m.seq >= lastSeq {
				readErr <- nil
				return
			}
		}
	}()
	for p := range queue {
		<-p.done
		if err := fn(p.r); err != nil {
			stopReading()
			for range queue {
			}
			return err
		}
	}
	return <-readErr
}

// opener opens the messages of one room for one worker, reusing its
// buffers from batch to batch.
type opener struct {
	c     *Client
	room  string
	st    *roomState
	batch *e2ee.BatchVerifier
	// bufs hold the envelopes of a batch, one each, reused from batch to
	// batch (what a message shows is copied out of them).
	bufs  [maxBatch][]byte
	ready []opening
}

// opening is a message whose envelope parsed and whose sender and key are
// known, waiting for its signature check.
type opening struct {
	p       *pending
	env     *e2ee.Envelope
	sender  roomchain.Member
	signer  e2ee.SenderKey // the sender's key, from the verified history
	roomKey *e2ee.RoomKey
}

func newOpener(c *Client, room string) *opener {
	return &opener{c: c, room: room, st: c.roomState(room), batch: e2ee.NewBatchVerifier()}
}

// open verifies and decrypts the envelopes of a batch read from the room,
// setting each pending's Received, and marks each done.
func (o *opener) open(ctx context.Context, batch []*pending) {
	o.batch.Reset()
	o.ready = o.ready[:0]
	for i, p := range batch {
		p.r = Received{Room: o.room, Seq: p.r.Seq}
		if op, ok := o.prepare(ctx, p, &o.bufs[i]); ok {
			o.ready = append(o.ready, op)
			o.batch.Add(op.signer, op.env.SignedMessage(), op.env.Signature[:])
		}
	}
	valid := o.batch.Verify(nil)
	for i, op := range o.ready {
		if !valid[i] {
			op.p.r.Err = fmt.Errorf("message from %s does not verify: %w", op.sender.Name, e2ee.ErrSignature)
			continue
		}
		o.finish(ctx, op)
	}
	clear(o.ready)
	for _, p := range batch {
		close(p.done)
	}
}

// prepare parses p's envelope and finds its verified sender and the key of
// its epoch, or sets p.r.Err.
func (o *opener) prepare(ctx context.Context, p *pending, buf *[]byte) (opening, bool) {
	r := &p.r
	var into []byte // messages above maxKeptBuffer get a buffer of their own
	if need := len(e2ee.SignaturePrefix) + len(p.data); need <= maxKeptBuffer {
		if cap(*buf) < need {
			*buf = make([]byte, 0, max(need, 2048))
		}
		into = *buf
	}
	env, err := e2ee.ParseTo(into, p.data)
	if err != nil {
		r.Err = fmt.Errorf("unreadable message: %w", err)
		return opening{}, false
	}
	r.ID, r.Epoch, r.Time = env.MessageID(), env.Epoch, time.Unix(0, env.Time).UTC()
	r.Sender = shortKey(env.Sender)
	if env.Room != o.room {
		r.Err = fmt.Errorf("message for room %s replayed into room %s: %w", env.Room, o.room, e2ee.ErrWrongRoom)
		return opening{}, false
	}
	s, sk, key, err := o.c.senderAndKey(ctx, o.st, o.room, env.Sender, env.Epoch, !env.Cleartext)
	if err != nil {
		r.Err = err
		return opening{}, false
	}
	r.SenderName, r.Sender = s.Name, sk.user
	// sk is the key the verified history holds for the envelope's sender
	// field: senderAndKey looked it up by that field.
	return opening{p: p, env: env, sender: s, signer: sk.SenderKey, roomKey: key}, true
}

// finish decrypts a verified message and checks what its payload says.
func (o *opener) finish(ctx context.Context, op opening) {
	r, env, id := &op.p.r, op.env, o.room
	snap := o.st.snap.Load()
	if snap != nil && env.Cleartext == snap.room.Encrypted {
		r.Err = fmt.Errorf("message cleartext flag does not match the room: %w", e2ee.ErrMalformed)
		return
	}
	plain, err := env.OpenInPlace(id, env.Epoch, op.roomKey)
	if err != nil {
		r.Err = fmt.Errorf("message from %s: %w", op.sender.Name, err)
		return
	}
	p, err := parsePayload(plain)
	if err != nil {
		r.Err = fmt.Errorf("message from %s has a malformed payload: %w", op.sender.Name, err)
		return
	}
	if p.Head != nil {
		if err := o.c.checkHead(ctx, o.st, id, op.sender.Name, *p.Head); err != nil {
			r.Err = err
			return
		}
	}
	r.Text, r.File = p.Text, p.File
}

// ErrForked reports that a message's sender was shown another membership
// history of the room than this client verified: the server is showing
// members different views of who is in the room.
var ErrForked = errors.New("membership history forked")

// checkHead compares the sender's history head with this client's.
func (c *Client) checkHead(ctx context.Context, st *roomState, id, sender string, h head) error {
	snap := st.snap.Load()
	if snap == nil {
		return nil
	}
	if h.Seq > snap.chain.Seq {
		var err error
		if snap, err = c.refreshRoom(ctx, id); err != nil {
			return err
		}
	}
	mine, ok := snap.hashes[h.Seq]
	switch {
	case h.Seq > snap.chain.Seq:
		return fmt.Errorf("%w: %s's message names statement %d of the room's history, but the server serves only %d to you", ErrForked, sender, h.Seq, snap.chain.Seq)
	case ok && mine != h.Hash:
		return fmt.Errorf("%w: statement %d of the room's history is %.12s… for %s and %.12s… for you: the server shows you different memberships; compare heads out of band", ErrForked, h.Seq, h.Hash, sender, mine)
	}
	return nil
}
