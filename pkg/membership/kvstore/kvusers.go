package kvstore

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/identity"
	"github.com/enmanuel/unibus/pkg/membership/store"
)

// Users, blobs and nonces of the JetStream KV store (see doc.go).

// maxRetries bounds the retries of a revision-checked update that lost a
// race it may retry (a revocation, a nonce).
const maxRetries = 10

// CreateUser registers u: its user record and its name (case-folded),
// in one atomic batch, each only if its key is new. A zero CreatedAt
// means now. Names written before they were folded (n.Dave) are not in
// the batch's way: the cache, which holds every user from the open on,
// refuses a name that any user has in any case first.
func (s *jetstreamStore) CreateUser(ctx context.Context, u api.User) error {
	if err := store.CheckNewUser(u); err != nil {
		return err
	}
	if _, ok := s.cache.user(u.User); ok {
		return userKeyTaken(u.User)
	}
	if named := s.cache.named(u.Name); len(named) > 0 {
		return store.NameTaken(u.Name, named[0].Name)
	}
	u.CreatedAt = fromNanos(nanos(u.CreatedAt))
	if u.RevokedAt != nil {
		t := fromNanos(nanos(*u.RevokedAt))
		u.RevokedAt = &t
	}
	data, err := json.Marshal(toKVUser(u))
	if err != nil {
		return s.fail("create user", err)
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	seq, err := s.atomicCreate(ctx, []*nats.Msg{
		{Subject: subject(s.buckets.users, nameKey(u.Name)), Data: []byte(u.User)},
		{Subject: subject(s.buckets.users, userKey(u.User)), Data: data},
	})
	if isWrongLastSeq(err) {
		_, taken, gerr := s.get(ctx, s.users, userKey(u.User))
		switch {
		case gerr != nil:
			return s.fail("create user", gerr)
		case taken:
			return userKeyTaken(u.User)
		default:
			holder := u.Name
			if h, _, err := s.lookupUser(ctx, u.Name); err == nil {
				holder = h.Name
			}
			return store.NameTaken(u.Name, holder)
		}
	}
	if err != nil {
		return s.fail("create user", err)
	}
	s.cache.putUser(seq, cloneUser(u))
	return nil
}

func userKeyTaken(key string) error {
	return api.Errorf(api.CodeConflict, "user key %s is already registered: look it up with its key instead of adding it again", key)
}

// GetUser returns the user with this key or, failing that, this name in
// any case (store.MatchName), from the cache; a user the cache does not
// know (yet) is looked up in the bucket.
func (s *jetstreamStore) GetUser(ctx context.Context, keyOrName string) (api.User, error) {
	u, ok, named := s.cache.lookup(keyOrName)
	if !ok && len(named) > 0 {
		u, err := store.MatchName(keyOrName, named)
		if err != nil {
			return api.User{}, err
		}
		return cloneUser(u), nil
	}
	if ok {
		return cloneUser(u), nil
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	u, _, err := s.lookupUser(ctx, keyOrName)
	if err != nil {
		return api.User{}, err
	}
	return u, nil
}

// readUser reads user k by its key from the bucket (the stream leader),
// with the revision of its record, and puts it in the cache; ok is false
// if there is no such user.
func (s *jetstreamStore) readUser(ctx context.Context, k string) (u api.User, rev uint64, ok bool, err error) {
	e, ok, err := s.get(ctx, s.users, userKey(k))
	if err != nil || !ok {
		return api.User{}, 0, false, err
	}
	if u, err = decodeUser(e.Value()); err != nil {
		return api.User{}, 0, false, err
	}
	s.cache.putUser(e.Revision(), cloneUser(u))
	return u, e.Revision(), true, nil
}

// lookupUser reads a user by key, then by name in any case
// (store.MatchName), from the bucket (the stream leader), with the
// revision of its record. The users of a name are those the cache knows
// by it, else the one its name key holds: n.<folded name>, and n.<name>
// as written before names were folded.
func (s *jetstreamStore) lookupUser(ctx context.Context, keyOrName string) (api.User, uint64, error) {
	if keyOrName == "" {
		return api.User{}, 0, store.UserNotFound(keyOrName)
	}
	if store.LooksLikeUserKey(keyOrName) {
		u, rev, ok, err := s.readUser(ctx, keyOrName)
		if err != nil {
			return api.User{}, 0, s.fail("get user", err)
		}
		if ok {
			return u, rev, nil
		}
	}
	var keys []string
	for _, u := range s.cache.named(keyOrName) {
		keys = append(keys, u.User)
	}
	if len(keys) == 0 {
		for _, nk := range []string{nameKey(keyOrName), "n." + kvToken(keyOrName)} {
			e, ok, err := s.get(ctx, s.users, nk)
			if err != nil {
				return api.User{}, 0, s.fail("get user", err)
			}
			if ok && !slices.Contains(keys, string(e.Value())) {
				keys = append(keys, string(e.Value()))
			}
		}
	}
	var (
		users []api.User
		revs  = map[string]uint64{}
	)
	for _, k := range keys {
		u, rev, ok, err := s.readUser(ctx, k)
		if err != nil {
			return api.User{}, 0, s.fail("get user", err)
		}
		if ok && identity.FoldName(u.Name) == identity.FoldName(keyOrName) {
			users = append(users, u)
			revs[u.User] = rev
		}
	}
	u, err := store.MatchName(keyOrName, users)
	if err != nil {
		return api.User{}, 0, err
	}
	return u, revs[u.User], nil
}

// ListUsers returns every user, oldest first (ties by user key), from the
// cache once it has caught up with the bucket.
func (s *jetstreamStore) ListUsers(ctx context.Context) ([]api.User, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	if err := s.syncUsers(ctx); err != nil {
		return nil, err
	}
	return s.cache.allUsers(), nil
}

// RevokedUsers returns the user keys of every revoked user, from the
// watch-fed cache: for the data plane's revocation watch, which asks
// several times a second (ListUsers would ask the stream leader each
// time and copy every user).
func (s *jetstreamStore) RevokedUsers(context.Context) ([]string, error) {
	return s.cache.revokedUsers(), nil
}

// syncUsers waits until the cache holds every user write made before it
// was called: it reads the users stream's last sequence from the leader
// and waits for the watch to apply it. Checks inside a change (is this
// user active?) read the cache after it.
func (s *jetstreamStore) syncUsers(ctx context.Context) error {
	info, err := s.usersStream.Info(ctx)
	if err != nil {
		return s.fail("read users", err)
	}
	if err := s.cache.waitUsers(ctx, info.State.LastSeq); err != nil {
		return s.fail("read users", err)
	}
	return nil
}

// RevokeUser marks the user revoked at at (a zero at means now), keeping
// the first revocation time of a user already revoked: a read of the
// user from the leader and an update checked against its revision,
// retried if another write came in between.
func (s *jetstreamStore) RevokeUser(ctx context.Context, keyOrName string, at time.Time) (api.User, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	for range maxRetries {
		u, rev, err := s.lookupUser(ctx, keyOrName)
		if err != nil {
			return api.User{}, err
		}
		if u.Status == api.StatusRevoked {
			return u, nil
		}
		u.Status = api.StatusRevoked
		t := fromNanos(nanos(at))
		u.RevokedAt = &t
		data, err := json.Marshal(toKVUser(u))
		if err != nil {
			return api.User{}, s.fail("revoke user", err)
		}
		next, err := s.users.Update(ctx, userKey(u.User), data, rev)
		if isWrongLastSeq(err) {
			continue
		}
		if err != nil {
			return api.User{}, s.fail("revoke user", err)
		}
		s.cache.putUser(next, cloneUser(u))
		return u, nil
	}
	return api.User{}, api.Errorf(api.CodeUnavailable, "user %q is being changed by others: try again", keyOrName)
}

// IsAuthorized reports whether userKey is an active user, from the cache.
// A key the cache does not know is read from the bucket (by key only: one
// read), bounded by store.AuthorizeTimeout; any error answers false.
func (s *jetstreamStore) IsAuthorized(userKey string) bool {
	if !store.LooksLikeUserKey(userKey) {
		return false
	}
	if u, ok := s.cache.user(userKey); ok {
		return u.Active()
	}
	ctx, cancel := context.WithTimeout(context.Background(), store.AuthorizeTimeout)
	defer cancel()
	u, _, ok, err := s.readUser(ctx, userKey)
	return err == nil && ok && u.Active()
}

// userStatus returns the status of user k for a check inside a change:
// from the cache, which the caller brought up to date with syncUsers.
func (s *jetstreamStore) userStatus(k string) (string, error) {
	u, ok := s.cache.user(k)
	if !ok {
		return "", store.UserNotFound(k)
	}
	return u.Status, nil
}

// knownUser reports whether user k is registered. Users are never
// deleted, so a cache hit is always right; a miss is checked in the
// bucket.
func (s *jetstreamStore) knownUser(ctx context.Context, k string) (bool, error) {
	if _, ok := s.cache.user(k); ok {
		return true, nil
	}
	if !store.LooksLikeUserKey(k) {
		return false, nil
	}
	_, ok, err := s.get(ctx, s.users, userKey(k))
	if err != nil {
		return false, s.fail("get user", err)
	}
	return ok, nil
}

// userOf returns user k, for the sealer of a key and the members of a
// room: from the cache, else the bucket.
func (s *jetstreamStore) userOf(ctx context.Context, k string) (api.User, error) {
	if u, ok := s.cache.user(k); ok {
		return u, nil
	}
	u, _, ok, err := s.readUser(ctx, k)
	switch {
	case err != nil:
		return api.User{}, s.fail("get user", err)
	case !ok:
		return api.User{}, store.UserNotFound(k)
	}
	return u, nil
}

// ---- blobs ----

// kvBlob is a blob record as stored under <room>.<blob id>.
type kvBlob struct {
	Size     int64  `json:"size"`
	Uploader string `json:"uploader"`
	Created  int64  `json:"created"` // unix ns
}

// AddBlob records that blob b belongs to room b.Room; recording it again
// keeps the first record (a create, not an overwrite). not_found if the
// room does not exist; invalid if the uploader is not a registered user.
func (s *jetstreamStore) AddBlob(ctx context.Context, b api.Blob) error {
	if err := store.CheckNewBlob(b); err != nil {
		return err
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	if _, err := s.GetRoom(ctx, b.Room); err != nil {
		return err
	}
	known, err := s.knownUser(ctx, b.Uploader)
	if err != nil {
		return err
	}
	if !known {
		return store.UnknownUploader(b.Uploader)
	}
	data, err := json.Marshal(kvBlob{Size: b.Size, Uploader: b.Uploader, Created: nanos(b.CreatedAt)})
	if err != nil {
		return s.fail("add blob", err)
	}
	if _, err := s.blobs.Create(ctx, blobKey(b.Room, b.ID), data); err != nil && !isWrongLastSeq(err) {
		return s.fail("add blob", err)
	}
	return nil
}

// GetBlob returns the record of blob id in room.
func (s *jetstreamStore) GetBlob(ctx context.Context, room, id string) (api.Blob, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	if room == "" || id == "" {
		return api.Blob{}, store.BlobNotFound(room, id)
	}
	e, ok, err := s.get(ctx, s.blobs, blobKey(room, id))
	if err != nil {
		return api.Blob{}, s.fail("get blob", err)
	}
	if !ok {
		return api.Blob{}, store.BlobNotFound(room, id)
	}
	var kb kvBlob
	if err := json.Unmarshal(e.Value(), &kb); err != nil {
		return api.Blob{}, s.fail("get blob", err)
	}
	return api.Blob{ID: id, Room: room, Size: kb.Size, Uploader: kb.Uploader, CreatedAt: fromNanos(kb.Created)}, nil
}

// ---- nonces ----

// UseNonce records nonce until expires: a create of its key (conflict if
// it is there and unexpired), or a revision-checked update of an expired
// entry the server has not removed yet. Each entry carries a per-message
// TTL, so the server drops it once it has expired.
func (s *jetstreamStore) UseNonce(ctx context.Context, nonce string, expires time.Time) error {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	if nonce == "" {
		return api.Errorf(api.CodeInvalid, "empty request nonce: give every signed request a fresh nonce")
	}
	key := kvToken(nonce)
	value := []byte(strconv.FormatInt(nanos(expires), 10))
	// Message TTLs are whole seconds, at least one; the entry may outlive
	// its expiry by up to a second, which only delays its removal.
	ttl := max(time.Second, time.Until(expires).Truncate(time.Second)+time.Second)
	var last uint64 // the revision the write expects: 0, none
	for range maxRetries {
		_, err := s.js.PublishMsg(ctx, &nats.Msg{Subject: subject(s.buckets.nonces, key), Data: value},
			jetstream.WithMsgTTL(ttl), jetstream.WithExpectLastSequencePerSubject(last))
		if err == nil {
			return nil
		}
		if !isWrongLastSeq(err) {
			return s.fail("use nonce", err)
		}
		if last != 0 {
			// Another request reused the expired nonce first.
			return store.NonceUsed()
		}
		e, ok, err := s.get(ctx, s.nonces, key)
		if err != nil {
			return s.fail("use nonce", err)
		}
		if !ok {
			continue // removed meanwhile: create it again
		}
		if exp, err := strconv.ParseInt(string(e.Value()), 10, 64); err != nil || exp >= nanos(time.Now()) {
			return store.NonceUsed()
		}
		last = e.Revision()
	}
	return api.Errorf(api.CodeUnavailable, "request nonce store is busy: try again")
}
