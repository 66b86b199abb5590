package httpapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/identity"
	"github.com/enmanuel/unibus/pkg/membership/store"
	"github.com/enmanuel/unibus/pkg/reqsig"
	"github.com/enmanuel/unibus/pkg/roomchain"
)

// MaxHeaderBytes bounds the request header size (http.Server.MaxHeaderBytes),
// so a peer cannot exhaust memory with headers before any body limit applies.
const MaxHeaderBytes = 64 << 10

// DefaultMaxBlobBytes is the default ceiling of one uploaded blob.
const DefaultMaxBlobBytes = 1 << 30

// maxSealedKeyLen bounds one sealed key; real ones are 73 bytes.
const maxSealedKeyLen = 256

// SignatureWindow is how far a signed request's time may be from the
// server's clock when signatures are checked.
const SignatureWindow = 5 * time.Minute

// Blobs is what the server needs of a blob store.
type Blobs interface {
	Put(ctx context.Context, r io.Reader, maxBytes int64, wantSHA256 string) (id string, size int64, err error)
	Open(ctx context.Context, id string) (io.ReadCloser, int64, error)
	// Delete removes a blob of a deleted room.
	Delete(ctx context.Context, id string) error
}

// Publisher is what the server needs of a NATS connection to announce room
// changes (*nats.Conn satisfies it).
type Publisher interface {
	Publish(subject string, data []byte) error
}

// Server is the control-plane HTTP API (docs/api.md). Set its exported
// fields before serving; it is safe for concurrent use afterwards. It holds
// no state of its own: everything is read from and written to the Store.
type Server struct {
	// RequireEncryptedRooms refuses cleartext rooms (public binds).
	RequireEncryptedRooms bool
	// NATSURL is the data-plane URL handed to clients in /v1/info.
	NATSURL string
	// NATSURLs, when set, lists the data-plane URLs of every node of the
	// cluster, NATSURL's first, for /v1/info's nats_urls. It is called
	// for every answer: the cluster's nodes come and go.
	NATSURLs func() []string
	// Build is the build reported in /v1/info; NewServer sets the
	// version "dev".
	Build api.Build
	// MaxBlobBytes is the ceiling of one uploaded blob.
	MaxBlobBytes int64
	// Logger receives request failures; nil discards.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Events, when set, receives a [api.RoomEvent] on [api.RoomEventSubject]
	// after every committed membership or epoch change.
	Events Publisher
	// Readers, when set, opens members' history readers, and closes them
	// when a member is removed or revoked. Without it the server serves no
	// history (503).
	Readers Readers
	// UserLimit, when set, slows each user: a call takes a token from its
	// user's bucket once its signature has verified (under [AuthOff], from
	// the bucket of the user it claims), and is answered 429 when the
	// bucket is empty. A call whose signature does not verify takes none;
	// it counts only against its address, in a [RateLimiter] keyed by
	// [RemoteIPKey] in front of the Server.
	UserLimit *RateLimiter
	// Observer, when set, is told of refused signatures, key deliveries
	// and rekeys, for an operator's counters.
	Observer Observer
	// BodyTimeout is how long a request body may take to arrive, beyond
	// which it must keep coming at [MinBodyRate]; 0 means
	// [DefaultBodyTimeout]. See "Bodies" in the package doc.
	BodyTimeout time.Duration
	// MaxUnverifiedBodies bounds the JSON bodies read at once, before
	// their digest is compared with the signature; a call over it is
	// answered 503 with a Retry-After. 0 means [DefaultMaxUnverifiedBodies].
	MaxUnverifiedBodies int

	store      store.Store
	blobs      Blobs
	mode       AuthMode
	mux        *http.ServeMux
	unverified atomic.Int64 // JSON bodies being read
	admins     adminHint    // whether the bus has an admin yet
}

// NewServer returns the API over store and blobs with the given auth mode.
func NewServer(st store.Store, blobs Blobs, mode AuthMode) *Server {
	s := &Server{store: st, blobs: blobs, mode: mode, MaxBlobBytes: DefaultMaxBlobBytes, Build: api.Build{Version: "dev"}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.health)
	mux.HandleFunc("GET /v1/info", s.info)
	mux.Handle("GET /v1/me", s.json(0, s.me))
	mux.Handle("GET /v1/users", s.json(0, s.listUsers))
	mux.Handle("POST /v1/users", s.json(api.MaxJSONBody, s.addUser))
	mux.Handle("GET /v1/users/{user}", s.json(0, s.getUser))
	mux.Handle("POST /v1/users/{user}/revoke", s.json(api.MaxJSONBody, s.revokeUser))
	mux.Handle("GET /v1/rooms", s.json(0, s.listRooms))
	mux.Handle("POST /v1/rooms", s.json(api.MaxJSONBody, s.createRoom))
	mux.Handle("GET /v1/rooms/{room}", s.json(0, s.getRoom))
	mux.Handle("DELETE /v1/rooms/{room}", s.json(0, s.deleteRoom))
	mux.Handle("GET /v1/rooms/{room}/members", s.json(0, s.listMembers))
	mux.Handle("POST /v1/rooms/{room}/members", s.json(api.MaxRekeyBody, s.addMembers))
	mux.Handle("POST /v1/rooms/{room}/rekey", s.json(api.MaxRekeyBody, s.rekey))
	mux.Handle("GET /v1/rooms/{room}/keys", s.json(0, s.sealedKeys))
	mux.Handle("GET /v1/rooms/{room}/statements", s.json(0, s.statements))
	mux.Handle("POST /v1/rooms/{room}/readers", s.json(api.MaxJSONBody, s.openReader))
	mux.Handle("DELETE /v1/rooms/{room}/readers/{reader}", s.json(0, s.closeReader))
	mux.HandleFunc("POST /v1/rooms/{room}/blobs", s.uploadBlob)
	mux.HandleFunc("GET /v1/rooms/{room}/blobs/{blob}", s.downloadBlob)
	s.mux = mux
	return s
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	s.mux.ServeHTTP(&plainErrorGuard{ResponseWriter: w, r: r}, r)
}

// plainErrorGuard turns the plain-text 404 and 405 answers of the mux
// into JSON errors, so every error the API gives is JSON.
type plainErrorGuard struct {
	http.ResponseWriter
	r        *http.Request
	replaced bool
}

func (g *plainErrorGuard) WriteHeader(code int) {
	h := g.ResponseWriter.Header()
	if code < 400 || h.Get("Content-Type") == "application/json" {
		g.ResponseWriter.WriteHeader(code)
		return
	}
	g.replaced = true
	e := api.Errorf(api.CodeNotFound, "no route %s %s: see docs/api.md for the API", g.r.Method, g.r.URL.Path)
	if code == http.StatusMethodNotAllowed {
		e = api.Errorf(api.CodeMethod, "method %s not allowed on %s: see docs/api.md for the API", g.r.Method, g.r.URL.Path)
	}
	h.Set("Content-Type", "application/json")
	g.ResponseWriter.WriteHeader(code)
	json.NewEncoder(g.ResponseWriter).Encode(e)
}

func (g *plainErrorGuard) Write(b []byte) (int, error) {
	if g.replaced {
		return len(b), nil
	}
	return g.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (g *plainErrorGuard) Unwrap() http.ResponseWriter { return g.ResponseWriter }

// Flush lets streamed downloads flush through the guard.
func (g *plainErrorGuard) Flush() {
	if f, ok := g.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *Server) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Server) log() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.New(slog.DiscardHandler)
}

func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	s.writeJSON(w, http.StatusOK, api.Health{Status: "ok"})
}

func (s *Server) info(w http.ResponseWriter, r *http.Request) {
	info := api.Info{
		Build:         s.Build,
		AuthMode:      s.mode.String(),
		NATSURL:       s.NATSURL,
		NATSURLs:      s.natsURLs(),
		HistoryStream: api.HistoryStream,
		MaxBlobBytes:  s.MaxBlobBytes,
	}
	if s.UserLimit != nil {
		l := s.UserLimit.Limit()
		info.APIRate, info.APIBurst = l.PerSecond, l.Burst
	}
	s.writeJSON(w, http.StatusOK, info)
}

// natsURLs is NATSURLs' answer, or nothing when it is not set.
func (s *Server) natsURLs() []string {
	if s.NATSURLs == nil {
		return nil
	}
	return s.NATSURLs()
}

// call is one authenticated API call.
type call struct {
	user     api.User
	sig      reqsig.Signature // as parsed; checked as the auth mode says
	verified bool             // the signature verified (never under off)
	body     []byte
	r        *http.Request
}

// decode reads the call's JSON body into v strictly (decodeJSON): one
// object, nothing after it, every key exactly a field's name, once.
func (c *call) decode(v any) error { return decodeJSON(c.body, v) }

type handlerFunc func(ctx context.Context, c *call) (int, any, error)

// json wraps a JSON handler: it authenticates the caller before reading
// anything of the body, reads the body under its ceiling (see readBody),
// checks that it is the body signed, and writes the result or the error.
func (s *Server) json(maxBody int64, h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if maxBody > 0 {
			if ct := r.Header.Get("Content-Type"); ct != "" && !isJSONContentType(ct) {
				s.writeError(w, r, api.Errorf(api.CodeUnsupported, "content type %q not accepted: send application/json", ct))
				return
			}
		}
		c, err := s.authenticate(r)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		var body []byte
		if maxBody > 0 {
			if body, err = s.readBody(w, r, maxBody); err != nil {
				s.writeError(w, r, err)
				return
			}
		} else if n, _ := io.Copy(io.Discard, io.LimitReader(s.timedBody(w, r), 1)); n > 0 {
			s.writeError(w, r, api.Errorf(api.CodeInvalid, "%s %s takes no body: send none", r.Method, r.URL.Path))
			return
		}
		if err := s.checkBody(c, sha256.Sum256(body)); err != nil {
			s.writeError(w, r, err)
			return
		}
		c.body = body
		status, v, err := h(r.Context(), c)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		s.writeJSON(w, status, v)
	})
}

func isJSONContentType(ct string) bool { return isMediaType(ct, "application/json") }

func isMediaType(ct, want string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && mt == want
}

// authenticate finds the calling user from the request signature, parsed
// once for the whole call, before anything of the body is read: the
// header's shape; under soft and enforce, the signature's time window and
// the signature itself, over the method, the request URI and the body
// digest it claims; the user's rate limit ([Server.UserLimit]); and the
// user, known and active (one store read). What only the body can show,
// that it is the body signed, checkBody checks once the body is read.
func (s *Server) authenticate(r *http.Request) (*call, error) {
	sig, err := reqsig.Parse(r.Header.Get("Authorization"))
	if err != nil {
		if errors.Is(err, reqsig.ErrMissing) {
			s.signatureFailed(SigMissing)
		} else {
			s.signatureFailed(SigMalformed)
		}
		if s.mode == AuthSoft && errors.Is(err, reqsig.ErrMissing) {
			// soft tolerates unsigned calls only where a user can still be
			// named; without a claimed key there is nobody to act as.
			return nil, api.Errorf(api.CodeUnauthorized, "request is not signed: the SDK and the unibus CLI sign every call")
		}
		return nil, api.Errorf(api.CodeUnauthorized, "%v: the SDK and the unibus CLI sign every call (see docs/request-signature.md)", err)
	}
	c := &call{sig: sig, r: r}
	if s.mode != AuthOff {
		if verr := s.checkSignature(r, &sig); verr != nil {
			if s.mode == AuthEnforce {
				return nil, verr
			}
			s.log().Warn("request signature rejected (soft mode: allowed)", "method", r.Method, "path", r.URL.Path, "user", sig.User, "reason", verr.Error())
		} else {
			c.verified = true
		}
	}
	// A user's budget is spent only by the user: a signature that does not
	// verify counts against its address alone (the limiter in front).
	// Under off nothing is verified, and the claim is the identity.
	if s.UserLimit != nil && (c.verified || s.mode == AuthOff) {
		if ok, wait := s.UserLimit.Allow(sig.User); !ok {
			return nil, rateLimited(wait)
		}
	}
	u, err := s.store.GetUser(r.Context(), sig.User)
	if err != nil && !api.IsCode(err, api.CodeNotFound) {
		return nil, err
	}
	if err != nil || u.User != sig.User { // GetUser also matches names; a signature names a key
		return nil, s.unknownUser(r.Context(), sig.User)
	}
	if !u.Active() {
		return nil, api.Errorf(api.CodeRevoked, "user %s is revoked: ask an admin", u.Name)
	}
	c.user = u
	return c, nil
}

// checkSignature checks what a signature shows without the body: its time
// window, then the signature over the method, the request URI and the
// body digest it claims.
func (s *Server) checkSignature(r *http.Request, sig *reqsig.Signature) error {
	if d := s.now().Sub(sig.TimeValue()); d > SignatureWindow || d < -SignatureWindow {
		s.signatureFailed(SigClock)
		return api.Errorf(api.CodeUnauthorized, "request signed at %s, outside the %s window of the server clock: check this machine's clock", sig.TimeValue().UTC().Format(time.RFC3339), SignatureWindow)
	}
	if err := sig.Verify(r.Method, r.URL.RequestURI()); err != nil {
		s.signatureFailed(SigInvalid)
		return api.Errorf(api.CodeUnauthorized, "%v: sign the exact method, path and query sent", err)
	}
	return nil
}

// checkBody finishes the signature check of c once its body is known:
// body is the digest of the body received, or for a streamed upload the
// digest the signature claims (the blob store checks it as it writes).
// Under off, and for a signature soft mode let through, there is nothing
// to finish.
func (s *Server) checkBody(c *call, body [32]byte) error {
	if !c.verified {
		return nil
	}
	r := c.r
	if c.sig.Body != body {
		s.signatureFailed(SigBody)
		err := api.Errorf(api.CodeUnauthorized, "request signature covers another body: sign the body you send")
		if s.mode == AuthEnforce {
			return err
		}
		s.log().Warn("request signature rejected (soft mode: allowed)", "method", r.Method, "path", r.URL.Path, "user", c.sig.User, "reason", err.Error())
		return nil
	}
	// A request that changes something is accepted once: its nonce is kept
	// in the store (so also across restarts and nodes) until the signature's
	// window has passed. Reads are not recorded; a replayed read returns
	// only what is sealed for the signer.
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		expires := c.sig.TimeValue().Add(SignatureWindow + time.Second)
		if err := s.store.UseNonce(r.Context(), c.sig.User+":"+hex.EncodeToString(c.sig.Nonce[:]), expires); err != nil {
			if api.IsCode(err, api.CodeConflict) {
				s.signatureFailed(SigReplay)
				return api.Errorf(api.CodeUnauthorized, "replayed request: sign every request anew")
			}
			return err
		}
	}
	return nil
}

func (s *Server) writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if err := json.NewEncoder(w).Encode(v); err != nil {
		s.log().Debug("write response", "err", err)
	}
}

// writeError answers with the error's status and a JSON body. Errors that
// are not *api.Error become internal, their details kept in the log.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var later *retryLater
	if errors.As(err, &later) {
		w.Header().Set("Retry-After", later.retryAfter())
	}
	var e *api.Error
	if !errors.As(err, &e) {
		s.log().Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		e = api.Errorf(api.CodeInternal, "internal error: the server log has the details; try again or tell the operator")
	}
	s.writeJSON(w, api.HTTPStatus(e.Code), e)
}

func (s *Server) me(ctx context.Context, c *call) (int, any, error) {
	return http.StatusOK, c.user, nil
}

func requireAdmin(c *call) error {
	if c.user.Role != api.RoleAdmin {
		return api.Errorf(api.CodeForbidden, "only admins manage users: ask an admin")
	}
	return nil
}

func (s *Server) listUsers(ctx context.Context, c *call) (int, any, error) {
	if err := requireAdmin(c); err != nil {
		return 0, nil, err
	}
	users, err := s.store.ListUsers(ctx)
	return http.StatusOK, nonNil(users), err
}

func (s *Server) addUser(ctx context.Context, c *call) (int, any, error) {
	if err := requireAdmin(c); err != nil {
		return 0, nil, err
	}
	var req api.AddUserRequest
	if err := c.decode(&req); err != nil {
		return 0, nil, err
	}
	pub, err := identity.ParseToken(req.Token)
	if err != nil {
		return 0, nil, api.Errorf(api.CodeInvalid, "%v", err)
	}
	u := api.User{Public: pub, Role: api.RoleMember, Status: api.StatusActive, CreatedAt: s.now().UTC()}
	if req.Admin {
		u.Role = api.RoleAdmin
	}
	reg, err := req.Registration.Verify()
	if err != nil {
		return 0, nil, api.Errorf(api.CodeInvalid, "%v: the SDK signs a registration for every user it adds", err)
	}
	if !reg.Matches(pub) || reg.Role != u.Role || reg.By != c.user.User {
		return 0, nil, api.Errorf(api.CodeInvalid, "the registration does not register this identity with role %s by the caller: sign the registration of this token and role yourself", u.Role)
	}
	u.Registration = &req.Registration
	if err := s.store.CreateUser(ctx, u); err != nil {
		return 0, nil, err
	}
	s.log().Info("user added", "user", u.User, "name", u.Name, "role", u.Role, "by", c.user.User)
	return http.StatusCreated, u, nil
}

func (s *Server) getUser(ctx context.Context, c *call) (int, any, error) {
	u, err := s.store.GetUser(ctx, c.r.PathValue("user"))
	return http.StatusOK, u, err
}

func (s *Server) revokeUser(ctx context.Context, c *call) (int, any, error) {
	if err := requireAdmin(c); err != nil {
		return 0, nil, err
	}
	if len(bytes.TrimSpace(c.body)) > 0 {
		var none struct{}
		if err := c.decode(&none); err != nil {
			return 0, nil, api.Errorf(api.CodeInvalid, "revoke takes no fields: send {} or nothing")
		}
	}
	u, err := s.store.RevokeUser(ctx, c.r.PathValue("user"), s.now().UTC())
	if err != nil {
		return 0, nil, err
	}
	s.log().Info("user revoked", "user", u.User, "name", u.Name, "by", c.user.User)
	s.closeReaders(ctx, "", u.User)
	s.announceRevoked(ctx, u.User)
	return http.StatusOK, u, nil
}

func (s *Server) listRooms(ctx context.Context, c *call) (int, any, error) {
	rooms, err := s.store.RoomsOf(ctx, c.user.User)
	return http.StatusOK, nonNil(rooms), err
}

func (s *Server) createRoom(ctx context.Context, c *call) (int, any, error) {
	var req api.CreateRoomRequest
	if err := c.decode(&req); err != nil {
		return 0, nil, err
	}
	if err := api.CheckRoomName(req.Name); err != nil {
		return 0, nil, err
	}
	if req.Cleartext && s.RequireEncryptedRooms {
		return 0, nil, api.Errorf(api.CodeForbidden, "cleartext rooms are disabled on this server (public bind): create an encrypted room")
	}
	id := req.ID
	switch {
	case id == "":
		return 0, nil, api.Errorf(api.CodeInvalid, "a new room needs the id its creation statement names: draw one with api.NewRoomID")
	case !api.ValidRoomID(id):
		return 0, nil, api.Errorf(api.CodeInvalid, "room id %q is not 26 characters of [a-z2-7]: draw one with api.NewRoomID", id)
	}
	room := api.Room{ID: id, Name: req.Name, Encrypted: !req.Cleartext, Epoch: 1, Creator: c.user.User, CreatedAt: s.now().UTC()}
	var key *api.SealedKey
	switch {
	case req.Cleartext && len(req.SealedKey) > 0:
		return 0, nil, api.Errorf(api.CodeInvalid, "a cleartext room takes no sealed_key: send none")
	case !req.Cleartext:
		if err := checkSealed(req.SealedKey); err != nil {
			return 0, nil, err
		}
		key = &api.SealedKey{Room: room.ID, Epoch: 1, Member: c.user.User, Sealer: c.user.Public, SealedKey: req.SealedKey}
	}
	if err := checkActor(req.Statement, c.user.User); err != nil {
		return 0, nil, err
	}
	if err := s.store.CreateRoom(ctx, room, key, req.Statement); err != nil {
		return 0, nil, err
	}
	s.announce(room, c.user.User)
	return http.StatusCreated, room, nil
}

func checkSealed(b []byte) error {
	if len(b) == 0 {
		return api.Errorf(api.CodeInvalid, "an encrypted room needs sealed_key: the room key sealed to the member")
	}
	if len(b) > maxSealedKeyLen {
		return api.Errorf(api.CodeInvalid, "sealed_key longer than %d bytes: it is not a sealed room key; send the room key sealed to the member", maxSealedKeyLen)
	}
	return nil
}

// memberOf returns the room of the request path, after checking that the
// caller is a current member of it: one store lookup, on every room
// request. A non-member gets not_found, as if the room did not exist, so
// room ids do not leak.
func (s *Server) memberOf(ctx context.Context, c *call) (string, error) {
	id := c.r.PathValue("room")
	if !api.ValidRoomID(id) {
		return "", notYourRoom(id)
	}
	ok, err := s.store.IsMember(ctx, id, c.user.User)
	if err == nil && !ok || api.IsCode(err, api.CodeNotFound) {
		return "", notYourRoom(id)
	}
	return id, err
}

// memberRoom is memberOf with the room's record, for the calls that need
// more of the room than its id.
func (s *Server) memberRoom(ctx context.Context, c *call) (api.Room, error) {
	id, err := s.memberOf(ctx, c)
	if err != nil {
		return api.Room{}, err
	}
	return s.store.GetRoom(ctx, id)
}

// notYourRoom is memberOf's answer to a non-member, made only when needed.
func notYourRoom(id string) error {
	return api.Errorf(api.CodeNotFound, "room %q not found among your rooms (or you are no longer a member): check `unibus room list`", id)
}

func (s *Server) getRoom(ctx context.Context, c *call) (int, any, error) {
	withMembers := true
	switch v := c.r.URL.Query().Get("members"); v {
	case "", "all":
	case "none":
		withMembers = false
	default:
		return 0, nil, api.Errorf(api.CodeInvalid, "members=%q: use all (the default) or none", v)
	}
	room, err := s.memberRoom(ctx, c)
	if err != nil {
		return 0, nil, err
	}
	if withMembers {
		if room.Members, err = s.store.Members(ctx, room.ID, false); err != nil {
			return 0, nil, err
		}
	}
	return http.StatusOK, room, nil
}

func (s *Server) listMembers(ctx context.Context, c *call) (int, any, error) {
	room, err := s.memberOf(ctx, c)
	if err != nil {
		return 0, nil, err
	}
	history := false
	switch v := c.r.URL.Query().Get("history"); v {
	case "", "0", "false":
	case "1", "true":
		history = true
	default:
		return 0, nil, api.Errorf(api.CodeInvalid, "history=%q: use true or false", v)
	}
	members, err := s.store.Members(ctx, room, history)
	return http.StatusOK, nonNil(members), err
}

func (s *Server) addMembers(ctx context.Context, c *call) (int, any, error) {
	room, err := s.memberRoom(ctx, c)
	if err != nil {
		return 0, nil, err
	}
	var req api.AddMembersRequest
	if err := c.decode(&req); err != nil {
		return 0, nil, err
	}
	if len(req.Members) == 0 {
		return 0, nil, api.Errorf(api.CodeInvalid, "members is empty: name at least one user to add")
	}
	if len(req.Keys) > 0 && !req.Rekey {
		return 0, nil, api.Errorf(api.CodeInvalid, "keys are for a rekeying add: set rekey, or send none")
	}
	add := store.Add{Room: room.ID, Epoch: req.Epoch, Users: make([]string, len(req.Members)), Rekey: req.Rekey, Statement: req.Statement}
	epoch := add.After()
	for i, m := range req.Members {
		u, err := s.store.GetUser(ctx, m.Member)
		if err != nil {
			return 0, nil, err
		}
		add.Users[i] = u.User
		switch {
		case room.Encrypted:
			if err := checkSealed(m.SealedKey); err != nil {
				return 0, nil, err
			}
			add.Keys = append(add.Keys, api.SealedKey{Room: room.ID, Epoch: epoch, Member: u.User, Sealer: c.user.Public, SealedKey: m.SealedKey})
		case len(m.SealedKey) > 0:
			return 0, nil, api.Errorf(api.CodeInvalid, "room %s is cleartext: send no sealed_key", room.ID)
		}
	}
	// A rekeying add's keys for the current members, by user key as a
	// rekey's are.
	for _, k := range req.Keys {
		if err := checkSealed(k.SealedKey); err != nil {
			return 0, nil, err
		}
		add.Keys = append(add.Keys, api.SealedKey{Room: room.ID, Epoch: epoch, Member: k.Member, Sealer: c.user.Public, SealedKey: k.SealedKey})
	}
	if err := checkActor(req.Statement, c.user.User); err != nil {
		return 0, nil, err
	}
	updated, err := s.store.AddMembers(ctx, add)
	if err != nil {
		return 0, nil, err
	}
	s.log().Info("members added", "room", room.ID, "count", len(add.Users), "by", c.user.User, "epoch", updated.Epoch, "rekey", add.Rekey)
	if add.Rekey {
		s.rekeyed(RekeyAdd)
		s.deliverKeys(room.ID, req.Statement, add.Keys)
	}
	s.announce(updated, add.Users...)
	return http.StatusOK, updated, nil
}

func (s *Server) rekey(ctx context.Context, c *call) (int, any, error) {
	room, err := s.memberOf(ctx, c)
	if err != nil {
		return 0, nil, err
	}
	var req api.RekeyRequest
	if err := c.decode(&req); err != nil {
		return 0, nil, err
	}
	if err := checkActor(req.Statement, c.user.User); err != nil {
		return 0, nil, err
	}
	change := store.Rekey{Room: room, FromEpoch: req.FromEpoch, Remove: req.Remove, Keys: make([]api.SealedKey, 0, len(req.Keys)), Statement: req.Statement}
	for _, k := range req.Keys {
		if err := checkSealed(k.SealedKey); err != nil {
			return 0, nil, err
		}
		change.Keys = append(change.Keys, api.SealedKey{Room: room, Epoch: req.FromEpoch + 1, Member: k.Member, Sealer: c.user.Public, SealedKey: k.SealedKey})
	}
	updated, err := s.store.Rekey(ctx, change)
	if err != nil {
		return 0, nil, err
	}
	s.log().Info("room rekeyed", "room", room, "epoch", updated.Epoch, "removed", len(req.Remove), "by", c.user.User)
	if len(req.Remove) > 0 {
		s.rekeyed(RekeyRemoval)
	} else {
		s.rekeyed(RekeyRotation)
	}
	s.closeReaders(ctx, room, req.Remove...)
	s.deliverKeys(room, req.Statement, change.Keys)
	s.announce(updated, req.Remove...)
	return http.StatusOK, updated, nil
}

// checkActor refuses a statement made in another member's name: the
// caller signs the statements of the changes it asks for.
func checkActor(st roomchain.Signed, caller string) error {
	parsed, err := roomchain.Parse(st)
	if err != nil {
		return api.Errorf(api.CodeInvalid, "statement: %v (the SDK signs one for every membership change)", err)
	}
	if parsed.Actor != caller {
		return api.Errorf(api.CodeInvalid, "statement is made by %s, not by the caller: sign your own statement", parsed.Actor)
	}
	return nil
}

func (s *Server) statements(ctx context.Context, c *call) (int, any, error) {
	room, err := s.memberOf(ctx, c)
	if err != nil {
		return 0, nil, err
	}
	var after uint64
	if v := c.r.URL.Query().Get("after"); v != "" {
		if after, err = strconv.ParseUint(v, 10, 64); err != nil {
			return 0, nil, api.Errorf(api.CodeInvalid, "after=%q: use a whole number, the last statement you hold", v)
		}
	}
	sts, err := s.store.Statements(ctx, room, after)
	return http.StatusOK, nonNil(sts), err
}

// deliverKeys publishes each member's new sealed key with the statement of
// the rekey that made it ([api.KeyDelivery]): members then hold the new key
// without a request each. Failure is logged: members that miss a delivery
// read the key from the API when the room event tells them of the rekey.
func (s *Server) deliverKeys(room string, st roomchain.Signed, keys []api.SealedKey) {
	if s.Events == nil {
		return
	}
	for i, k := range keys {
		b, _ := json.Marshal(api.KeyDelivery{Room: room, Statement: st, Key: k})
		if err := s.Events.Publish(api.KeysSubject(k.Member), b); err != nil {
			s.log().Warn("deliver a new room key", "room", room, "member", k.Member, "err", err)
			s.keysDelivered(i, len(keys)-i)
			return
		}
	}
	s.keysDelivered(len(keys), 0)
}

// announceRevoked tells the rooms of a revoked user that one of their
// members is revoked, so that their members read the member list again
// and the next to send rekeys the user out. Failure is logged: members
// also read the member list every minute.
func (s *Server) announceRevoked(ctx context.Context, user string) {
	if s.Events == nil {
		return
	}
	rooms, err := s.store.RoomsOf(ctx, user)
	if err != nil {
		s.log().Warn("announce a revocation to the user's rooms", "user", user, "err", err)
		return
	}
	for _, r := range rooms {
		s.publishEvent(api.RoomEvent{Room: r.ID, Epoch: r.Epoch, Seq: r.HeadSeq, Revoked: []string{user}}, "announce a revocation")
	}
}

// announce tells the room's clients that it changed. Failure is logged:
// the change is committed, and clients also refresh on an unknown epoch.
func (s *Server) announce(room api.Room, changed ...string) {
	s.publishEvent(api.RoomEvent{Room: room.ID, Epoch: room.Epoch, Seq: room.HeadSeq, Users: changed}, "announce room change")
}

// publishEvent publishes ev on its room's event subject, when the server
// has Events; a failure is logged with the message failed.
func (s *Server) publishEvent(ev api.RoomEvent, failed string) {
	if s.Events == nil {
		return
	}
	b, _ := json.Marshal(ev)
	if err := s.Events.Publish(api.RoomEventSubject(ev.Room), b); err != nil {
		s.log().Warn(failed, "room", ev.Room, "err", err)
	}
}

func (s *Server) sealedKeys(ctx context.Context, c *call) (int, any, error) {
	room, err := s.memberOf(ctx, c)
	if err != nil {
		return 0, nil, err
	}
	var epoch uint64
	if v := c.r.URL.Query().Get("epoch"); v != "" {
		epoch, err = strconv.ParseUint(v, 10, 64)
		if err != nil || epoch == 0 {
			return 0, nil, api.Errorf(api.CodeInvalid, "epoch=%q: use a positive whole number, or leave it out for every epoch", v)
		}
	}
	keys, err := s.store.SealedKeys(ctx, room, c.user.User, epoch)
	return http.StatusOK, nonNil(keys), err
}

// blobCall authenticates a blob request. An upload's body is streamed and
// so cannot be hashed before the signature is checked: the digest the
// signature claims is checked by the blob store as it writes. A download
// has no body.
func (s *Server) blobCall(w http.ResponseWriter, r *http.Request, upload bool) (*call, string, bool) {
	c, err := s.authenticate(r)
	if err == nil {
		body := reqsig.EmptyBody
		if upload {
			body = c.sig.Body
		}
		err = s.checkBody(c, body)
	}
	if err != nil {
		s.writeError(w, r, err)
		return nil, "", false
	}
	room, err := s.memberOf(r.Context(), c)
	if err != nil {
		s.writeError(w, r, err)
		return nil, "", false
	}
	return c, room, true
}

func (s *Server) uploadBlob(w http.ResponseWriter, r *http.Request) {
	if ct := r.Header.Get("Content-Type"); ct != "" && !isMediaType(ct, "application/octet-stream") {
		s.writeError(w, r, api.Errorf(api.CodeUnsupported, "content type %q not accepted: send application/octet-stream", ct))
		return
	}
	if r.ContentLength > s.MaxBlobBytes {
		s.writeError(w, r, api.Errorf(api.CodeTooLarge, "blob of %d bytes is over this server's limit of %d bytes: send a smaller file", r.ContentLength, s.MaxBlobBytes))
		return
	}
	c, room, ok := s.blobCall(w, r, true)
	if !ok {
		return
	}
	id, size, err := s.blobs.Put(r.Context(), s.timedBody(w, r), s.MaxBlobBytes, hex.EncodeToString(c.sig.Body[:]))
	if err != nil {
		s.writeError(w, r, blobError(err, s.MaxBlobBytes))
		return
	}
	b := api.Blob{ID: id, Room: room, Size: size, Uploader: c.user.User, CreatedAt: s.now().UTC()}
	if err := s.store.AddBlob(r.Context(), b); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeJSON(w, http.StatusCreated, b)
}

func (s *Server) downloadBlob(w http.ResponseWriter, r *http.Request) {
	_, room, ok := s.blobCall(w, r, false)
	if !ok {
		return
	}
	id := r.PathValue("blob")
	if !validBlobID(id) {
		s.writeError(w, r, api.Errorf(api.CodeInvalid, "blob id %q is not 64 lowercase hex digits: use the id the upload returned", id))
		return
	}
	if _, err := s.store.GetBlob(r.Context(), room, id); err != nil {
		s.writeError(w, r, err)
		return
	}
	rc, size, err := s.blobs.Open(r.Context(), id)
	if err != nil {
		s.writeError(w, r, blobError(err, s.MaxBlobBytes))
		return
	}
	defer rc.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	w.WriteHeader(http.StatusOK)
	if _, err := io.Copy(w, rc); err != nil {
		s.log().Debug("blob download interrupted", "blob", id, "err", err)
	}
}

func validBlobID(id string) bool {
	if len(id) != 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// blobError maps blob store errors to API errors by their text-free
// identity: the store's sentinel errors are matched through the interface
// below so this package does not depend on one blob backend.
func blobError(err error, max int64) error {
	var ce interface{ BlobErrorCode() string }
	if errors.As(err, &ce) {
		switch ce.BlobErrorCode() {
		case "too_large":
			return api.Errorf(api.CodeTooLarge, "blob is over this server's limit of %d bytes: send a smaller file", max)
		case "digest_mismatch":
			return api.Errorf(api.CodeInvalid, "uploaded bytes do not match the SHA-256 the request signed: upload again")
		case "not_found":
			return api.Errorf(api.CodeNotFound, "blob not found: it may have been deleted; upload it again")
		case "invalid_id":
			return api.Errorf(api.CodeInvalid, "invalid blob id: use the id the upload returned")
		}
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return slowBody()
	}
	if errors.Is(err, context.Canceled) {
		return api.Errorf(api.CodeInvalid, "upload interrupted: upload again")
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return api.Errorf(api.CodeTooLarge, "blob is over this server's limit of %d bytes: send a smaller file", max)
	}
	return fmt.Errorf("blob store: %w", err)
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
