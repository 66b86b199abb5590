package httpapi

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/enmanuel/unibus/pkg/api"
)

// Bodies: how long they may take and how many are read at once before
// their signature is fully checked.
const (
	// DefaultBodyTimeout is how long a request body may take to arrive
	// unless [Server.BodyTimeout] says otherwise.
	DefaultBodyTimeout = 30 * time.Second
	// MinBodyRate is the slowest, in bytes a second, that a body may
	// arrive past its BodyTimeout: each MinBodyRate bytes received give it
	// one more second. A 1 GiB upload may thus take up to 4.5 hours, and a
	// body trickling in is cut soon after BodyTimeout.
	MinBodyRate = 64 << 10
	// DefaultMaxUnverifiedBodies is how many JSON bodies are read at once
	// unless [Server.MaxUnverifiedBodies] says otherwise. With the largest
	// ceiling, [api.MaxRekeyBody] (16 MiB), that bounds them to 256 MiB.
	DefaultMaxUnverifiedBodies = 16
)

// readBody reads the JSON body of c, at most max bytes and in time (see
// timedBody). Until it is read, and its digest compared with the one
// signed, a body may be anyone's: under off or soft anybody's, under
// enforce one sent with a signature seen before (a replay). So only
// MaxUnverifiedBodies are read at once; a call over that is answered 503
// with a Retry-After, its body unread. A body's buffer is sized from its
// Content-Length, so it holds no more than the body.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request, max int64) ([]byte, error) {
	if r.ContentLength > max {
		return nil, tooLarge(max)
	}
	if n := s.unverified.Add(1); n > int64(s.maxUnverified()) {
		s.unverified.Add(-1)
		return nil, &retryLater{after: time.Second, err: api.Errorf(api.CodeUnavailable, "the server is reading as many request bodies as it allows at once: retry in a second")}
	}
	defer s.unverified.Add(-1)
	var buf bytes.Buffer
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength) + bytes.MinRead) // ReadFrom wants MinRead spare
	}
	if _, err := buf.ReadFrom(http.MaxBytesReader(w, s.timedBody(w, r), max)); err != nil {
		var mbe *http.MaxBytesError
		switch {
		case errors.As(err, &mbe):
			return nil, tooLarge(max)
		case errors.Is(err, os.ErrDeadlineExceeded):
			return nil, slowBody()
		}
		return nil, api.Errorf(api.CodeInvalid, "read request body: %v: send the request again", err)
	}
	return buf.Bytes(), nil
}

func tooLarge(max int64) error {
	return api.Errorf(api.CodeTooLarge, "request body over %d bytes: send less", max)
}

func slowBody() error {
	return api.Errorf(api.CodeInvalid, "request body arrived too slowly: send it again, at %d KiB/s or faster", MinBodyRate>>10)
}

func (s *Server) maxUnverified() int {
	if s.MaxUnverifiedBodies > 0 {
		return s.MaxUnverifiedBodies
	}
	return DefaultMaxUnverifiedBodies
}

func (s *Server) bodyTimeout() time.Duration {
	if s.BodyTimeout > 0 {
		return s.BodyTimeout
	}
	return DefaultBodyTimeout
}

// timedBody returns the body of r, which must arrive in time: within
// BodyTimeout, and past that at MinBodyRate (each MinBodyRate bytes
// received buy one more second), so that an upload of any size at a sane
// rate goes through and a body that trickles in is cut. The limit is the
// connection's read deadline, moved as the bytes come in; a writer that
// has no deadlines (a test recorder) reads without one.
func (s *Server) timedBody(w http.ResponseWriter, r *http.Request) io.ReadCloser {
	if r.Body == nil || r.Body == http.NoBody {
		// Nothing to read. net/http is already reading the connection to
		// notice a client going away; a deadline set now would end that
		// read, and cancel the request, when it passed.
		return http.NoBody
	}
	b := &deadlineBody{ReadCloser: r.Body, rc: http.NewResponseController(w), start: time.Now(), timeout: s.bodyTimeout()}
	b.move(b.start.Add(b.timeout))
	return b
}

// deadlineBody is a request body read under a moving deadline.
type deadlineBody struct {
	io.ReadCloser
	rc      *http.ResponseController
	start   time.Time
	timeout time.Duration
	n       int64     // bytes received
	set     time.Time // the deadline last set
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	// Moved only while more is to come: at the end of the body net/http
	// clears the deadline to watch the connection, and one set again then
	// would cancel the request when it passed. Moved by a second or more
	// at a time, so that small reads do not each reset a timer.
	if n > 0 && err == nil {
		earned := time.Duration(b.n/MinBodyRate)*time.Second + time.Duration(b.n%MinBodyRate)*time.Second/MinBodyRate
		if dl := b.start.Add(b.timeout + earned); dl.Sub(b.set) >= time.Second {
			b.move(dl)
		}
	}
	return n, err
}

func (b *deadlineBody) move(dl time.Time) {
	b.set = dl
	_ = b.rc.SetReadDeadline(dl) // http.ErrNotSupported: no deadline to move
}
