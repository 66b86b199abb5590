package httpapi

import (
	"context"
	"sync"
	"time"

	"github.com/enmanuel/unibus/pkg/api"
)

// adminHint remembers whether the store holds an active admin, for the
// answer to an unknown user key: on a bus without one nobody can add the
// caller, and the fix is to seed the first admin on the host. Once an
// admin is seen the answer is kept; until then the store is asked at most
// once every adminCheckGap, so that unknown callers cannot make the
// server list its users at will. It tells an unauthenticated caller only
// whether the bus has an admin yet.
type adminHint struct {
	mu      sync.Mutex
	seen    bool
	checked time.Time
}

// adminCheckGap bounds how often an unknown user key makes the server
// look for an admin.
const adminCheckGap = time.Second

// hasAdmin reports whether the store holds an active admin, as far as it
// last looked (true when it cannot tell).
func (s *Server) hasAdmin(ctx context.Context) bool {
	h := &s.admins
	h.mu.Lock()
	defer h.mu.Unlock()
	now := s.now()
	if h.seen || now.Sub(h.checked) < adminCheckGap && !h.checked.IsZero() {
		return h.seen
	}
	h.checked = now
	users, err := s.store.ListUsers(ctx)
	if err != nil {
		return true
	}
	for _, u := range users {
		if u.Role == api.RoleAdmin && u.Active() {
			h.seen = true
			break
		}
	}
	return h.seen
}

// unknownUser is the answer to a request signed by a user key the store
// does not know.
func (s *Server) unknownUser(ctx context.Context, user string) error {
	if !s.hasAdmin(ctx) {
		return api.Errorf(api.CodeUnauthorized, "unknown user key %s, and this bus has no admin yet to add you: on the bus host, register the first admin with `membershipd user seed --admin TOKEN` (TOKEN is what `unibus id show --public` prints)", user)
	}
	return api.Errorf(api.CodeUnauthorized, "unknown user key %s: ask an admin to add you with `unibus user add TOKEN`", user)
}
