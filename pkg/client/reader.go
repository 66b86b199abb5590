package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/subjects"
)

// ErrRemoved and ErrRevoked end a read whose reader membershipd closed:
// the caller was removed from the room (or left it), or its user was
// revoked.
var (
	ErrRemoved = errors.New("removed from the room")
	ErrRevoked = errors.New("user revoked")
)

// Reading a room goes through a history reader that membershipd opens
// for the caller (docs/security.md, package readers on the server): a
// consumer of the history stream pushing the room's messages to a subject
// of the caller's inbox, with idle heartbeats and flow control. The SDK
// subscribes first, asks for the reader, answers flow control, and checks
// that consumer sequences follow one another: a gap (messages dropped
// while the connection was reconnecting) or silence past a few heartbeats
// (the reader was deleted, or its node is gone) makes it open a new reader
// from the message after the last one it delivered, as nats.go's ordered
// consumer does with consumers of its own.

// readerSilence is how many heartbeats may be missed before a reader is
// taken for gone.
const readerSilence = 3

// pendingLimit bounds what a reader's subscription buffers (flow control
// keeps JetStream well below it).
const (
	pendingMsgs  = 1 << 20
	pendingBytes = 256 << 20
)

// reader is one read of a room: the reader membershipd opened, and the
// position reached.
type reader struct {
	c    *Client
	room string
	sub  *nats.Subscription
	info api.Reader
	// next is the stream sequence to ask for when the reader is opened
	// again; cons the consumer sequence of the last message received.
	next uint64
	cons uint64
	// retry keeps a followed read going through an outage: a reader that
	// cannot be opened again for want of an answer is asked for again,
	// until the context ends.
	retry bool
}

// openReader opens a reader of room from stream sequence start (0: the
// first message).
func (c *Client) openReader(ctx context.Context, room string, start uint64) (*reader, error) {
	r := &reader{c: c, room: room, next: start}
	if err := r.open(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

// open subscribes to a fresh subject of the caller's inbox and asks
// membershipd for a reader delivering there from r.next.
func (r *reader) open(ctx context.Context) error {
	deliver := subjects.InboxPrefix(r.c.id.UserKey()) + "." + api.ReaderSubjectToken + "." + subjects.NewConsumerPrefix()
	sub, err := r.c.nc.SubscribeSync(deliver)
	if err != nil {
		return fmt.Errorf("read room %s: subscribe: %w", r.room, err)
	}
	sub.SetPendingLimits(pendingMsgs, pendingBytes)
	var info api.Reader
	err = r.c.do(ctx, http.MethodPost, "/v1/rooms/"+r.room+"/readers", nil, api.ReaderRequest{Deliver: deliver, StartSeq: r.next}, &info)
	if err != nil {
		sub.Unsubscribe()
		return r.c.lostAccess(r.room, err)
	}
	r.sub, r.info, r.cons = sub, info, 0
	return nil
}

// close ends the read: the subscription, and the reader at membershipd
// (in the background: it also closes by itself once nobody listens).
func (r *reader) close() {
	if r.sub == nil {
		return
	}
	r.sub.Unsubscribe()
	name := r.info.Name
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		r.c.do(ctx, http.MethodDelete, "/v1/rooms/"+r.room+"/readers/"+name, nil, nil, nil)
	}()
	r.sub = nil
}

// reopen replaces the reader with one from the message after the last
// one delivered. A followed read whose server does not answer, or says
// to come back later, asks again, each time a little later (at most
// reopenMaxWait), until it answers or ctx ends.
func (r *reader) reopen(ctx context.Context, why string) error {
	r.c.log.Debug("history reader lost; opening another", "room", r.room, "from", r.next, "why", why)
	r.close()
	for wait := reopenFirstWait; ; wait = min(2*wait, reopenMaxWait) {
		err := r.open(ctx)
		if err == nil || !r.retry || !transient(err) {
			return err
		}
		r.c.log.Debug("cannot open a history reader; trying again", "room", r.room, "in", wait, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}

// The waits between attempts to open a reader again during an outage.
const (
	reopenFirstWait = 250 * time.Millisecond
	reopenMaxWait   = 5 * time.Second
)

// readerMsg is one message of the room, with its stream sequence and how
// many of the room's messages the reader had yet to deliver after it.
type readerMsg struct {
	data    []byte
	seq     uint64
	pending uint64
}

// nextMsg returns the room's next message, answering flow control and
// heartbeats and reopening the reader on a gap or a silence on the way.
func (r *reader) nextMsg(ctx context.Context) (readerMsg, error) {
	silence := readerSilence * time.Duration(max(r.info.Heartbeat, 100)) * time.Millisecond
	for {
		wait, cancel := context.WithTimeout(ctx, silence)
		m, err := r.sub.NextMsgWithContext(wait)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return readerMsg{}, ctx.Err()
			}
			if errors.Is(err, context.DeadlineExceeded) && !r.c.nc.IsConnected() && !r.c.nc.IsClosed() {
				// Silent because the connection is down: the reader
				// resumes when it is back, or is replaced then.
				continue
			}
			if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrSlowConsumer) {
				if err := r.reopen(ctx, err.Error()); err != nil {
					return readerMsg{}, err
				}
				continue
			}
			return readerMsg{}, fmt.Errorf("read room %s: %w", r.room, err)
		}
		if status := m.Header.Get("Status"); status != "" {
			if err := r.control(ctx, m, status); err != nil {
				return readerMsg{}, err
			}
			continue
		}
		md, err := m.Metadata()
		if err != nil || md.Stream != api.HistoryStream || md.Consumer != r.info.Name {
			// Not from the reader: JetStream sends a publish's ack to any
			// reply subject its publisher names, this one included.
			r.c.log.Debug("ignoring a message on the reader's subject that the reader did not send", "room", r.room)
			continue
		}
		if md.Sequence.Consumer != r.cons+1 {
			if err := r.reopen(ctx, "gap"); err != nil {
				return readerMsg{}, err
			}
			continue
		}
		r.cons, r.next = md.Sequence.Consumer, md.Sequence.Stream+1
		return readerMsg{data: m.Data, seq: md.Sequence.Stream, pending: md.NumPending}, nil
	}
}

// control handles a status message of the reader: a flow-control request
// (answered), an idle heartbeat (answered when it says the reader stalled;
// checked for messages lost), or anything else (the reader is replaced).
func (r *reader) control(ctx context.Context, m *nats.Msg, status string) error {
	if status != "100" {
		return r.reopen(ctx, "status "+status+" "+m.Header.Get("Description"))
	}
	if m.Reply != "" {
		// A flow-control request.
		if !strings.HasPrefix(m.Reply, "$JS.FC.") {
			return nil
		}
		return r.answer(m.Reply)
	}
	if stalled := m.Header.Get("Nats-Consumer-Stalled"); stalled != "" {
		if err := r.answer(stalled); err != nil {
			return err
		}
	}
	if last := m.Header.Get("Nats-Last-Consumer"); last != "" {
		if n, err := strconv.ParseUint(last, 10, 64); err == nil && n != r.cons {
			return r.reopen(ctx, "gap at heartbeat")
		}
	}
	return nil
}

// answer publishes the empty answer to a flow-control subject.
func (r *reader) answer(subject string) error {
	if err := r.c.nc.Publish(subject, nil); err != nil {
		return fmt.Errorf("read room %s: answer flow control: %w", r.room, err)
	}
	return nil
}

// lostAccess turns the API's refusal to open a reader into what happened:
// the caller left the room or was removed ([ErrRemoved]), the room was
// deleted ([ErrRoomDeleted], when membershipd announced it), or its user
// was revoked ([ErrRevoked]); other errors as they are.
func (c *Client) lostAccess(room string, err error) error {
	if gone := c.roomGone(room, err); gone != err {
		return gone
	}
	switch {
	case api.IsCode(err, api.CodeNotFound):
		return fmt.Errorf("you were removed from room %s (or it is gone): %w: ask a member to add you again", room, ErrRemoved)
	case api.IsCode(err, api.CodeRevoked):
		return fmt.Errorf("your user was revoked: %w: ask an admin", ErrRevoked)
	}
	return err
}
