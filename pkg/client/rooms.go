package client

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/e2ee"
	"github.com/enmanuel/unibus/pkg/identity"
)

// Me returns the caller's user record.
func (c *Client) Me(ctx context.Context) (api.User, error) {
	var u api.User
	err := c.do(ctx, http.MethodGet, "/v1/me", nil, nil, &u)
	return u, err
}

// AddUser registers the user whose public identity token is given (admins only).
func (c *Client) AddUser(ctx context.Context, token string, admin bool) (api.User, error) {
	if _, err := identity.ParseToken(token); err != nil {
		return api.User{}, err
	}
	var u api.User
	err := c.do(ctx, http.MethodPost, "/v1/users", nil, api.AddUserRequest{Token: strings.TrimSpace(token), Admin: admin}, &u)
	return u, err
}

// Users lists every user (admins only).
func (c *Client) Users(ctx context.Context) ([]api.User, error) {
	var us []api.User
	err := c.do(ctx, http.MethodGet, "/v1/users", nil, nil, &us)
	return us, err
}

// User looks up one user by name or user key. The returned identity's
// binding has been verified.
func (c *Client) User(ctx context.Context, user string) (api.User, error) {
	var u api.User
	if err := c.do(ctx, http.MethodGet, "/v1/users/"+url.PathEscape(user), nil, nil, &u); err != nil {
		return api.User{}, err
	}
	if err := u.Public.Verify(); err != nil {
		return api.User{}, fmt.Errorf("server returned user %q with an identity that does not verify: %w", user, err)
	}
	return u, nil
}

// RevokeUser revokes a user by name or user key (admins only).
func (c *Client) RevokeUser(ctx context.Context, user string) (api.User, error) {
	var u api.User
	err := c.do(ctx, http.MethodPost, "/v1/users/"+url.PathEscape(user)+"/revoke", nil, struct{}{}, &u)
	return u, err
}

// Rooms lists the caller's rooms.
func (c *Client) Rooms(ctx context.Context) ([]api.Room, error) {
	var rs []api.Room
	err := c.do(ctx, http.MethodGet, "/v1/rooms", nil, nil, &rs)
	return rs, err
}

// ResolveRoom turns a room id, or a room name unambiguous among the
// caller's rooms, into a room id.
func (c *Client) ResolveRoom(ctx context.Context, ref string) (string, error) {
	if api.ValidRoomID(ref) {
		return ref, nil
	}
	rooms, err := c.Rooms(ctx)
	if err != nil {
		return "", err
	}
	var ids []string
	for _, r := range rooms {
		if r.Name == ref {
			ids = append(ids, r.ID)
		}
	}
	switch len(ids) {
	case 0:
		return "", api.Errorf(api.CodeNotFound, "no room %q among your rooms: see `unibus room list`", ref)
	case 1:
		return ids[0], nil
	}
	return "", api.Errorf(api.CodeInvalid, "room name %q is ambiguous among your rooms (%s): use the id", ref, strings.Join(ids, ", "))
}

// Room returns a room with its current members.
func (c *Client) Room(ctx context.Context, ref string) (api.Room, error) {
	id, err := c.ResolveRoom(ctx, ref)
	if err != nil {
		return api.Room{}, err
	}
	var r api.Room
	err = c.do(ctx, http.MethodGet, "/v1/rooms/"+id, nil, nil, &r)
	return r, err
}

// CreateRoom creates a room with the caller as its only member. An
// encrypted room starts at epoch 1 with a fresh key sealed to the caller.
func (c *Client) CreateRoom(ctx context.Context, name string, cleartext bool) (api.Room, error) {
	if !api.ValidRoomName(name) {
		return api.Room{}, api.Errorf(api.CodeInvalid, "invalid room name %q: use 1 to %d printable characters without leading or trailing space", name, api.MaxRoomNameLen)
	}
	req := api.CreateRoomRequest{ID: api.NewRoomID(), Name: name, Cleartext: cleartext}
	if !cleartext {
		key, err := e2ee.NewRoomKey(rand.Reader)
		if err != nil {
			return api.Room{}, err
		}
		self := c.id.Public()
		if req.SealedKey, err = c.seal(key, req.ID, 1, self); err != nil {
			return api.Room{}, err
		}
	}
	var r api.Room
	if err := c.do(ctx, http.MethodPost, "/v1/rooms", nil, req, &r); err != nil {
		return api.Room{}, err
	}
	return r, nil
}

// seal seals key for (room, epoch) to the member after checking its
// identity binding.
func (c *Client) seal(key e2ee.RoomKey, room string, epoch uint64, to identity.Public) ([]byte, error) {
	if err := to.Verify(); err != nil {
		return nil, fmt.Errorf("refusing to seal a key to %s: %w", to.Name, err)
	}
	x, _ := identity.ParseXKey(to.XKey)
	pk, _ := identity.ParseUserKey(to.User)
	sc := e2ee.SealedKeyContext{Room: room, Epoch: epoch, Recipient: [32]byte(pk)}
	return e2ee.SealRoomKey(key, sc, c.id.XPrivate(), x, rand.Reader)
}

// AddMember adds user (name or key) to the room, sealing the current
// epoch's key to it. The new member can read the room from this epoch on.
func (c *Client) AddMember(ctx context.Context, roomRef, user string) (api.Room, error) {
	id, err := c.ResolveRoom(ctx, roomRef)
	if err != nil {
		return api.Room{}, err
	}
	u, err := c.User(ctx, user)
	if err != nil {
		return api.Room{}, err
	}
	if !u.Active() {
		return api.Room{}, api.Errorf(api.CodeInvalid, "user %s is revoked: it cannot be added", u.Name)
	}
	// One retry: the room may have been rekeyed between our read and write.
	for attempt := 0; ; attempt++ {
		st, err := c.refreshRoom(ctx, id)
		if err != nil {
			return api.Room{}, err
		}
		req := api.AddMemberRequest{User: u.User, Epoch: st.room.Epoch}
		if st.room.Encrypted {
			key, ok := st.keys[st.room.Epoch]
			if !ok {
				return api.Room{}, fmt.Errorf("room %s: you hold no key for its current epoch %d, so you cannot share it; ask a member to rekey", id, st.room.Epoch)
			}
			if req.SealedKey, err = c.seal(*key, id, st.room.Epoch, u.Public); err != nil {
				return api.Room{}, err
			}
		}
		var r api.Room
		err = c.do(ctx, http.MethodPost, "/v1/rooms/"+id+"/members", nil, req, &r)
		if api.IsCode(err, api.CodeConflict) && attempt == 0 && strings.Contains(err.Error(), "epoch") {
			continue
		}
		if err == nil {
			c.markStale(id)
		}
		return r, err
	}
}

// RemoveMember removes user (name or key) from the room and rekeys it in
// the same request: the removed member holds no key for what follows.
func (c *Client) RemoveMember(ctx context.Context, roomRef, user string) (api.Room, error) {
	id, err := c.ResolveRoom(ctx, roomRef)
	if err != nil {
		return api.Room{}, err
	}
	st, err := c.refreshRoom(ctx, id)
	if err != nil {
		return api.Room{}, err
	}
	key := ""
	for _, m := range st.current {
		if m.User == user || m.Name == user {
			key = m.User
		}
	}
	if key == "" {
		return api.Room{}, api.Errorf(api.CodeNotFound, "%s is not a member of room %s: see `unibus room show %s`", user, id, id)
	}
	return c.rekey(ctx, st, []string{key})
}

// Rekey starts a new epoch of the room with a fresh key sealed to every
// current member.
func (c *Client) Rekey(ctx context.Context, roomRef string) (api.Room, error) {
	id, err := c.ResolveRoom(ctx, roomRef)
	if err != nil {
		return api.Room{}, err
	}
	st, err := c.refreshRoom(ctx, id)
	if err != nil {
		return api.Room{}, err
	}
	return c.rekey(ctx, st, nil)
}

// rekey moves the room to the next epoch without the removed members.
func (c *Client) rekey(ctx context.Context, st *roomSnapshot, remove []string) (api.Room, error) {
	req := api.RekeyRequest{FromEpoch: st.room.Epoch, Remove: remove}
	if st.room.Encrypted {
		key, err := e2ee.NewRoomKey(rand.Reader)
		if err != nil {
			return api.Room{}, err
		}
		gone := make(map[string]bool, len(remove))
		for _, r := range remove {
			gone[r] = true
		}
		next := st.room.Epoch + 1
		grants, err := sealAll(c, key, st.room.ID, next, st.current, gone)
		if err != nil {
			return api.Room{}, err
		}
		req.Keys = grants
	}
	var r api.Room
	err := c.do(ctx, http.MethodPost, "/v1/rooms/"+st.room.ID+"/rekey", nil, req, &r)
	if api.IsCode(err, api.CodeConflict) {
		return api.Room{}, fmt.Errorf("room %s changed while rekeying (another member rekeyed or added someone): %w; run the command again", st.room.ID, err)
	}
	if err == nil {
		c.markStale(st.room.ID)
	}
	return r, err
}

// sealAll seals key to every member not in gone.
func sealAll(c *Client, key e2ee.RoomKey, room string, epoch uint64, members []api.Member, gone map[string]bool) ([]api.KeyGrant, error) {
	grants := make([]api.KeyGrant, 0, len(members))
	for _, m := range members {
		if gone[m.User] {
			continue
		}
		sealed, err := c.seal(key, room, epoch, m.Public)
		if err != nil {
			return nil, err
		}
		grants = append(grants, api.KeyGrant{Member: m.User, SealedKey: sealed})
	}
	if len(grants) == 0 {
		return nil, errors.New("a rekey must leave at least one member in the room")
	}
	return grants, nil
}
