// Package client is the unibus Go SDK: everything the unibus CLI does, as a
// library. It talks to membershipd's HTTP API for users, rooms, members and
// sealed keys, and to NATS directly for messages.
//
// # Use
//
//	c, err := client.New(client.Config{Servers: []string{"http://127.0.0.1:8470"}, Identity: id})
//	defer c.Close()
//	room, err := c.CreateRoom(ctx, "ops", false)
//	_, err = c.Send(ctx, room.ID, client.Message{Text: "hello"})
//	err = c.Read(ctx, room.ID, client.ReadOptions{Last: 10}, func(m client.Received) error { … })
//
// # What it guarantees
//
// Every API call is signed with the caller's user key (docs/request-signature.md).
// Messages are sealed into the envelope of docs/envelope.md: encrypted under
// the room key of the current epoch and signed by the sender. A received
// message is shown only after its signature verifies against a sender that
// was a member of the room at the message's epoch; otherwise it carries an
// error and no text. Room keys are opened locally; the server only ever
// holds them sealed.
//
// # Caching
//
// Sending and receiving do not call the control plane per message: the SDK
// keeps each room's members (with their history) and keys, and refreshes
// them when membershipd announces a change on the room's event subject, when
// a message names an epoch or sender it does not know, or before a send
// after such an announcement.
//
// # Clusters
//
// Given the URLs of every node of a cluster ([Config.Servers]), a client
// sends each API request to the node that answered last, and to the next
// when one cannot be reached or answers that it is unavailable, signed
// anew; any other answer is the request's. Its NATS connection knows
// every node (/v1/info lists them) and moves to another when its own
// goes, and a read whose history reader died with its node opens another
// through the API. A change sent again after a node died mid-request is
// not made twice: messages carry their id, which the history
// deduplicates, and a membership change that comes back conflict is
// looked for in the room's history, where the client's own statement
// means it was done. Every wait for the deployment is bounded
// ([Config.Timeout]): a request no node answered fails with an
// [UnreachableError] naming each node tried and why, a message the
// history did not acknowledge with [ErrNotStored].
//
// A Client is safe for concurrent use.
package client

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/identity"
	"github.com/enmanuel/unibus/pkg/reqsig"
	"github.com/enmanuel/unibus/pkg/subjects"
)

// DefaultServer is the control-plane URL used when none is given.
const DefaultServer = "http://127.0.0.1:8470"

// Config configures a [Client].
type Config struct {
	// Server is the membershipd URL; DefaultServer when it and Servers
	// are empty.
	Server string
	// Servers lists the membershipd URLs of the nodes of one cluster,
	// tried in turn (after Server, when both are set): a request goes to
	// the node that answered last, and to the next when that one cannot
	// be reached or is unavailable.
	Servers []string
	// Identity signs requests and messages and opens room keys. Required.
	Identity *identity.Identity
	// TLS, when set, is used for HTTPS to the server and TLS to NATS (for
	// example a config whose RootCAs trusts the bus CA).
	TLS *tls.Config
	// NATSURL overrides the NATS URLs the server advertises in /v1/info;
	// it may list several, separated by commas.
	NATSURL string
	// Timeout bounds each wait for the deployment: an API request over
	// every node, the NATS connection, a message's acknowledgement by the
	// history. 0 means DefaultTimeout. Transfers that keep moving (a
	// file, a long read) are not cut by it.
	Timeout time.Duration
	// AttemptTimeout is how long one node may stay silent on a request
	// before the next is tried; 0 means DefaultAttemptTimeout.
	AttemptTimeout time.Duration
	// HTTPClient overrides the HTTP client (its transport's TLS config wins).
	HTTPClient *http.Client
	// Logger receives diagnostics; nil discards.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// PinFile is where the client remembers the keys it has seen for each
	// user name and the verified head of each room's membership history,
	// across runs (like SSH's known_hosts). Empty keeps them in memory for
	// the client's lifetime only.
	PinFile string
	// OnDisconnect, when set, is called when the NATS connection is lost,
	// with why (nil if not known); the client goes on trying to reconnect,
	// and a followed read resumes where it was. OnReconnect, when set, is
	// called once the connection is back. Neither is called when the
	// client closes. They run on the NATS client's callback goroutine and
	// must not block. membershipd closes a user's connections when its
	// rooms change, so a loss that OnReconnect follows within a moment is
	// routine.
	OnDisconnect func(err error)
	OnReconnect  func()
}

// Client is a connection to a unibus deployment as one user.
type Client struct {
	cfg    Config
	http   *http.Client
	id     *identity.Identity
	log    *slog.Logger
	selfPK [32]byte

	// nodes are the membershipd URLs to try; last is the index of the
	// one that answered last (nodes.go).
	nodes          []*url.URL
	last           atomic.Int64
	timeout        time.Duration
	attemptTimeout time.Duration

	natsOnce sync.Once
	natsErr  error
	nc       *nats.Conn
	js       jetstream.JetStream
	info     api.Info

	pins *pins
	// pairs caches the X25519 sealing key shared with each recipient xkey.
	pairs sync.Map
	// admins remembers the registering admins already checked, so a bulk
	// add looks each one up once, not once per user.
	admins sync.Map

	mu    sync.Mutex
	rooms map[string]*roomState
}

// New returns a client. It does not contact the server until first used.
func New(cfg Config) (*Client, error) {
	if cfg.Identity == nil {
		return nil, errors.New("client: an identity is required: make one with `unibus id new --name NAME`")
	}
	nodes, err := parseServers(cfg)
	if err != nil {
		return nil, err
	}
	hc := cfg.HTTPClient
	if hc == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.DialContext = (&net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}).DialContext
		if cfg.TLS != nil {
			tr.TLSClientConfig = cfg.TLS.Clone()
		}
		hc = &http.Client{Transport: tr}
	}
	lg := cfg.Logger
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	p, err := loadPins(cfg.PinFile)
	if err != nil {
		return nil, err
	}
	c := &Client{cfg: cfg, nodes: nodes, http: hc, id: cfg.Identity, log: lg, pins: p, rooms: map[string]*roomState{}}
	c.timeout, c.attemptTimeout = cfg.Timeout, cfg.AttemptTimeout
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	if c.attemptTimeout <= 0 {
		c.attemptTimeout = DefaultAttemptTimeout
	}
	copy(c.selfPK[:], cfg.Identity.SigningKey().Public().(ed25519.PublicKey))
	return c, nil
}

// Identity returns the identity the client acts as.
func (c *Client) Identity() *identity.Identity { return c.id }

// Close drains the NATS connection, if one was made, and returns once it
// is closed (or after ten seconds).
func (c *Client) Close() error {
	if c.nc == nil || c.nc.IsClosed() {
		return nil
	}
	closed := make(chan struct{})
	c.nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
	if err := c.nc.Drain(); err != nil {
		c.nc.Close()
		return err
	}
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		c.nc.Close()
	}
	return nil
}

func (c *Client) now() time.Time {
	if c.cfg.Now != nil {
		return c.cfg.Now()
	}
	return time.Now()
}

// do makes a signed JSON request, to the nodes in turn (send), and
// decodes the answer into out (if not nil). A non-2xx answer becomes an
// *api.Error.
func (c *Client) do(ctx context.Context, method, path string, query url.Values, in, out any) error {
	return c.doTracked(ctx, method, path, query, in, out, nil)
}

// doTracked is do, telling info (when not nil) whether the request was
// sent again after an attempt that a node may have done: a change's
// refusal may then be the mark of the change itself.
func (c *Client) doTracked(ctx context.Context, method, path string, query url.Values, in, out any, info *sendInfo) error {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
	}
	digest := sha256.Sum256(body)
	resp, err := c.sendTracked(ctx, func(ctx context.Context, node *url.URL) (*http.Request, error) {
		req, err := c.newRequest(ctx, node, method, path, query, bytes.NewReader(body), digest, int64(len(body)))
		if err == nil && in != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		return req, err
	}, info)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := checkResponse(resp); err != nil {
		return err
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(out); err != nil {
		return fmt.Errorf("decode %s %s answer: %w", method, path, err)
	}
	return nil
}

// newRequest builds a request to node signed over method, path and query,
// and the given body digest. Every attempt is signed anew: a node refuses
// a change whose signature it has seen.
func (c *Client) newRequest(ctx context.Context, node *url.URL, method, path string, query url.Values, body io.Reader, digest [32]byte, size int64) (*http.Request, error) {
	u := *node
	u.Path = node.Path + path
	u.RawQuery = query.Encode()
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	req.ContentLength = size
	if size == 0 {
		req.Body = http.NoBody
	}
	sig, err := reqsig.Sign(c.id, method, req.URL.RequestURI(), digest, c.now(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", sig.String())
	return req, nil
}

// checkResponse turns a non-2xx answer into an *api.Error.
func checkResponse(resp *http.Response) error {
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var e api.Error
	if json.Unmarshal(b, &e) == nil && e.Message != "" {
		if e.Code == "" {
			e.Code = api.CodeForStatus(resp.StatusCode)
		}
		return &e
	}
	if err := notTheAPI(resp, b); err != nil {
		return err
	}
	return api.Errorf(api.CodeForStatus(resp.StatusCode), "server answered %s", resp.Status)
}

// Info returns the server's /v1/info.
func (c *Client) Info(ctx context.Context) (api.Info, error) {
	var info api.Info
	err := c.do(ctx, http.MethodGet, "/v1/info", nil, nil, &info)
	return info, err
}

// connectNATS dials NATS once, with the user's nkey.
func (c *Client) connectNATS(ctx context.Context) error {
	c.natsOnce.Do(func() {
		info, err := c.Info(ctx)
		if err != nil {
			c.natsErr = err
			return
		}
		c.info = info
		natsURL := natsURLs(c.cfg.NATSURL, info)
		if natsURL == "" {
			c.natsErr = errors.New("the server advertises no NATS URL: pass --nats URL")
			return
		}
		opts := []nats.Option{
			nats.Name("unibus " + c.id.Name()),
			// Replies come to an inbox only this user may subscribe to
			// (the per-user permissions of an enforcing bus).
			nats.CustomInboxPrefix(subjects.InboxPrefix(c.id.UserKey())),
			nats.MaxReconnects(-1),
			nats.ReconnectWait(250 * time.Millisecond),
			nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
				// Called on Close too, which is no loss.
				if c.cfg.OnDisconnect != nil && !nc.IsClosed() && !nc.IsDraining() {
					c.cfg.OnDisconnect(err)
				}
			}),
			nats.ReconnectHandler(func(*nats.Conn) {
				if c.cfg.OnReconnect != nil {
					c.cfg.OnReconnect()
				}
			}),
			// Every node is listed, the answering node's first: connect
			// there, and to the next one listed when it goes.
			nats.DontRandomize(),
			// Asynchronous errors (a reconnection refused while a node
			// starts, a slow subscription) go to the logger, not to the
			// process's stderr as nats.go's default handler has them.
			nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
				if sub != nil {
					c.log.Warn("nats error", "subject", sub.Subject, "err", err)
					return
				}
				c.log.Warn("nats error", "err", err)
			}),
		}
		if info.AuthMode == "enforce" {
			// Only an enforcing bus authenticates NATS connections; the
			// others send no nonce to sign.
			opts = append(opts, nats.Nkey(c.id.UserKey(), c.id.NkeySign))
		}
		if c.cfg.TLS != nil {
			opts = append(opts, nats.Secure(c.cfg.TLS.Clone()))
		}
		// A connection can be closed while it is being made: on an
		// enforcing bus, membershipd closes a user's connections when its
		// rooms change. Try again a few times, except when refused.
		var nc *nats.Conn
		giveUp := time.Now().Add(c.timeout)
		for attempt := 0; ; attempt++ {
			nc, err = nats.Connect(natsURL, opts...)
			if err == nil || attempt == 4 || errors.Is(err, nats.ErrAuthorization) || strings.Contains(strings.ToLower(err.Error()), "authorization") || ctx.Err() != nil || time.Now().After(giveUp) {
				break
			}
			select {
			case <-ctx.Done():
			case <-time.After(time.Duration(attempt+1) * 100 * time.Millisecond):
			}
			if ctx.Err() != nil {
				break
			}
		}
		if err != nil {
			c.natsErr = c.natsConnectError(ctx, natsURL, err)
			return
		}
		// A publish whose acknowledgement has not come within the
		// Timeout is failed and forgotten (ErrAsyncPublishTimeout), so
		// that the copies Send gave up on, and a Stream's lost messages,
		// do not keep places among the MaxInFlight waiting.
		js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(MaxInFlight), jetstream.WithPublishAsyncTimeout(c.timeout))
		if err != nil {
			nc.Close()
			c.natsErr = fmt.Errorf("jetstream: %w", err)
			return
		}
		c.nc, c.js = nc, js
		if _, err := nc.Subscribe(api.KeysSubject(c.id.UserKey()), c.onKeyDelivery); err != nil {
			c.log.Warn("cannot receive new room keys as they are made; they will be read from the API", "err", err)
		}
	})
	return c.natsErr
}

// natsURLs returns the NATS URLs to connect to, separated by commas: the
// configured ones when set, else every node's the server lists, else the
// one it advertises.
func natsURLs(configured string, info api.Info) string {
	if configured != "" {
		return configured
	}
	if len(info.NATSURLs) > 0 {
		return strings.Join(info.NATSURLs, ",")
	}
	return info.NATSURL
}
