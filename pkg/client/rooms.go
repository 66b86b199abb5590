package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/enmanuel/unibus/internal/parallel"
	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/e2ee"
	"github.com/enmanuel/unibus/pkg/identity"
	"github.com/enmanuel/unibus/pkg/roomchain"
)

// Me returns the caller's user record.
func (c *Client) Me(ctx context.Context) (api.User, error) {
	var u api.User
	err := c.do(ctx, http.MethodGet, "/v1/me", nil, nil, &u)
	return u, err
}

// AddUser registers the user whose public identity token is given (admins only).
// The caller signs the registration, so that the directory the server
// serves can be checked against what an admin vouched for.
func (c *Client) AddUser(ctx context.Context, token string, admin bool) (api.User, error) {
	pub, err := identity.ParseToken(token)
	if err != nil {
		return api.User{}, err
	}
	role := api.RoleMember
	if admin {
		role = api.RoleAdmin
	}
	reg, err := identity.SignRegistration(identity.Registration{User: pub, Role: role, By: c.id.UserKey(), Time: c.now().UnixMilli()}, c.id.SigningKey())
	if err != nil {
		return api.User{}, err
	}
	var u api.User
	var info sendInfo
	err = c.doTracked(ctx, http.MethodPost, "/v1/users", nil, api.AddUserRequest{Token: strings.TrimSpace(token), Admin: admin, Registration: reg}, &u, &info)
	if info.resent && api.IsCode(err, api.CodeConflict) {
		// Sent again to another node after one that registered the user
		// did not answer: the user is there, with this very registration.
		var got api.User
		if c.do(ctx, http.MethodGet, "/v1/users/"+url.PathEscape(pub.User), nil, nil, &got) == nil &&
			got.User == pub.User && got.Registration != nil && bytes.Equal(got.Registration.Body, reg.Body) && bytes.Equal(got.Registration.Sig, reg.Sig) {
			return got, nil
		}
	}
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
	if err := c.checkRegistration(ctx, u); err != nil {
		return api.User{}, err
	}
	return u, nil
}

// checkRegistration verifies a user's admin-signed registration: it must
// register exactly this identity and role, and be signed by an admin whose
// own keys pass this client's pins. A user without one was seeded on the
// host.
func (c *Client) checkRegistration(ctx context.Context, u api.User) error {
	if u.Registration == nil {
		return nil
	}
	reg, err := u.Registration.Verify()
	if err != nil {
		return fmt.Errorf("user %s: %w", u.Name, err)
	}
	if !reg.Matches(u.Public) || reg.Role != u.Role {
		return fmt.Errorf("user %s: %w: the directory's keys or role differ from what admin %s registered", u.Name, identity.ErrBadRegistration, reg.By)
	}
	if reg.By == u.User {
		return nil
	}
	if _, ok := c.admins.Load(reg.By); ok {
		return nil
	}
	var admin api.User
	if err := c.do(ctx, http.MethodGet, "/v1/users/"+url.PathEscape(reg.By), nil, nil, &admin); err != nil {
		return fmt.Errorf("user %s: look up the admin who registered it: %w", u.Name, err)
	}
	if admin.User != reg.By || admin.Role != api.RoleAdmin || admin.Public.Verify() != nil {
		return fmt.Errorf("user %s: %w: registered by %s, who is not a valid admin", u.Name, identity.ErrBadRegistration, reg.By)
	}
	if err := c.pins.checkUser(admin.Name, admin.User, admin.XKey); err != nil {
		return err
	}
	c.admins.Store(reg.By, true)
	return nil
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

// CreateRoom creates a room with the caller as its only member (and room
// admin). An encrypted room starts at epoch 1 with a fresh key sealed to
// the caller. The creation statement opens the room's signed history.
func (c *Client) CreateRoom(ctx context.Context, name string, cleartext bool) (api.Room, error) {
	if err := api.CheckRoomName(name); err != nil {
		return api.Room{}, err
	}
	self := c.id.Public()
	req := api.CreateRoomRequest{ID: api.NewRoomID(), Name: name, Cleartext: cleartext}
	st, err := roomchain.Sign(roomchain.Statement{
		Version: roomchain.Version, Room: req.ID, Seq: 1, Kind: roomchain.KindCreate, Actor: self.User,
		Epoch: 1, Name: name, Encrypted: !cleartext, Time: c.now().UnixMilli(),
		Add: []roomchain.Member{{Public: self, Role: roomchain.RoleAdmin}}, Admins: []string{self.User},
	}, c.id.SigningKey())
	if err != nil {
		return api.Room{}, err
	}
	req.Statement = st
	if !cleartext {
		key, err := e2ee.NewRoomKey(rand.Reader)
		if err != nil {
			return api.Room{}, err
		}
		if req.SealedKey, err = c.seal(key, req.ID, 1, self); err != nil {
			return api.Room{}, err
		}
	}
	var r api.Room
	var info sendInfo
	if err := c.doTracked(ctx, http.MethodPost, "/v1/rooms", nil, req, &r, &info); err != nil {
		if info.resent && api.IsCode(err, api.CodeConflict) {
			if room, ok := c.committed(ctx, req.ID, req.Statement, nil); ok {
				return room, nil
			}
		}
		return api.Room{}, err
	}
	return r, nil
}

// committed reports whether st, the statement of a change sent again
// after an attempt that a node may have done (nodes.go) and refused, is
// in the room's history all the same, and returns the room as read then.
// The node that did the change could not answer, and the node the change
// went to next refused it: the room has changed (conflict), by this very
// statement. A statement that removes the caller (left, the room as it
// is without the caller) is taken as committed when the room is no
// longer the caller's to read.
func (c *Client) committed(ctx context.Context, room string, st roomchain.Signed, left *api.Room) (api.Room, bool) {
	parsed, err := roomchain.Parse(st)
	if err != nil {
		return api.Room{}, false
	}
	snap, err := c.readRoom(ctx, room)
	if err != nil {
		if left != nil && api.IsCode(err, api.CodeNotFound) {
			return *left, true
		}
		return api.Room{}, false
	}
	if h, ok := snap.hashes[parsed.Seq]; ok && h == st.HashHex() {
		c.log.Debug("a change sent again was committed by its first attempt", "room", room, "seq", parsed.Seq)
		return snap.room, true
	}
	return api.Room{}, false
}

// seal seals key for (room, epoch) to a member after checking its identity
// binding.
//
// The identity must come from a verified source (the room's verified
// history, or a directory entry whose binding and registration were
// checked): seal does not verify it again. The X25519 agreement with each
// recipient is made once per client and kept (e2ee.PairKey), so a rekey of
// a room whose members were sealed to before costs well under a
// microsecond per member.
func (c *Client) seal(key e2ee.RoomKey, room string, epoch uint64, to identity.Public) ([]byte, error) {
	pk, err := identity.ParseUserKey(to.User)
	if err != nil {
		return nil, err
	}
	pair, err := c.sealingPair(to.XKey)
	if err != nil {
		return nil, fmt.Errorf("refusing to seal a key to %s: %w", to.Name, err)
	}
	sc := e2ee.SealedKeyContext{Room: room, Epoch: epoch, Recipient: [32]byte(pk)}
	return pair.Seal(key, sc, rand.Reader)
}

// sealingPair returns the cached sealing key shared with an xkey.
func (c *Client) sealingPair(xkey string) (*e2ee.PairKey, error) {
	if p, ok := c.pairs.Load(xkey); ok {
		return p.(*e2ee.PairKey), nil
	}
	x, err := identity.ParseXKey(xkey)
	if err != nil {
		return nil, err
	}
	p, err := c.xkeys().SealingPairKey(x)
	if err != nil {
		return nil, err
	}
	c.pairs.Store(xkey, p)
	return p, nil
}

// statement signs the next statement of a verified room history: the
// change (members added, user keys removed) and the admin set it leaves.
func (c *Client) statement(chain *roomchain.State, kind string, epoch uint64, add []roomchain.Member, remove []string, reason string) (roomchain.Signed, error) {
	return roomchain.Sign(roomchain.Statement{
		Version: roomchain.Version, Room: chain.Room, Seq: chain.Seq + 1, Prev: chain.Head, Kind: kind,
		Actor: c.id.UserKey(), Epoch: epoch, Add: add, Remove: remove, Admins: chain.AdminsAfter(add, remove),
		Time: c.now().UnixMilli(), Reason: reason,
	}, c.id.SigningKey())
}

// AddMember adds user (name or key) to the room, sealing the current
// epoch's key to it, and signs the add statement. The new member can read
// the room from this epoch on; a former member, from the next one (see
// AddMembers). Only room admins may add members.
func (c *Client) AddMember(ctx context.Context, roomRef, user string) (api.Room, error) {
	return c.AddMembers(ctx, roomRef, []string{user})
}

// AddMembers adds users (names or keys) in one request and one statement:
// a room of thousands is built in one step. Each user's identity binding is
// verified and its keys pinned before anything is sealed to it.
//
// Re-adding a former member (the verified history tells) rekeys the room
// in the same request: the room moves to the next epoch, whose new key is
// sealed to every member and to those added, so that a returning member
// reads nothing of what was sent while it was out. Revoked members are
// removed first, in a rekey of their own.
func (c *Client) AddMembers(ctx context.Context, roomRef string, users []string) (api.Room, error) {
	id, err := c.ResolveRoom(ctx, roomRef)
	if err != nil {
		return api.Room{}, err
	}
	if len(users) == 0 {
		return api.Room{}, errors.New("no users to add")
	}
	added := make([]roomchain.Member, 0, len(users))
	seen := make(map[string]bool, len(users))
	for _, name := range users {
		u, err := c.User(ctx, name)
		if err != nil {
			return api.Room{}, err
		}
		if !u.Active() {
			return api.Room{}, api.Errorf(api.CodeInvalid, "user %s is revoked: it cannot be added", u.Name)
		}
		if seen[u.User] {
			continue
		}
		seen[u.User] = true
		added = append(added, roomchain.Member{Public: u.Public, Role: roomchain.RoleMember})
	}
	names := make([]pinnedName, len(added))
	for i, m := range added {
		names[i] = pinnedName{m.Name, pinnedUser{User: m.User, XKey: m.XKey}}
	}
	if err := c.pins.checkUsers(names); err != nil {
		return api.Room{}, err
	}
	// One retry: the room may have changed between our read and write.
	for attempt := 0; ; attempt++ {
		snap, err := c.readRoom(ctx, id)
		if err != nil {
			return api.Room{}, err
		}
		chain := snap.chain
		for _, m := range added {
			if _, ok := chain.Member(m.User); ok {
				return api.Room{}, api.Errorf(api.CodeConflict, "%s is already a member of room %s", m.Name, id)
			}
		}
		if me, _ := chain.Member(c.id.UserKey()); me.Role != roomchain.RoleAdmin {
			return api.Room{}, api.Errorf(api.CodeForbidden, "only room admins add members, and you are not one in room %s", id)
		}
		// A former member rekeys the room, and so does a key made by a
		// member that left (it knows the key).
		rekey := snap.room.Encrypted && chain.LeftBy != ""
		for _, m := range added {
			rekey = rekey || chain.Former(m.User)
		}
		if rekey && len(snap.revoked()) > 0 && attempt == 0 {
			// The new key goes to every member: revoked ones go first.
			if _, err := c.rekey(ctx, snap, nil); err != nil {
				return api.Room{}, err
			}
			continue
		}
		epoch := chain.Epoch
		if rekey {
			epoch++
		}
		req := api.AddMembersRequest{Epoch: chain.Epoch, Rekey: rekey}
		if req.Statement, err = c.statement(chain, roomchain.KindAdd, epoch, added, nil, ""); err != nil {
			return api.Room{}, err
		}
		switch {
		case snap.room.Encrypted && rekey:
			key, err := e2ee.NewRoomKey(rand.Reader)
			if err != nil {
				return api.Room{}, err
			}
			if req.Members, err = c.sealAll(key, id, epoch, added); err != nil {
				return api.Room{}, err
			}
			if req.Keys, err = c.sealAll(key, id, epoch, chain.Members); err != nil {
				return api.Room{}, err
			}
		case snap.room.Encrypted:
			key, ok := snap.keys[chain.Epoch]
			if !ok {
				return api.Room{}, fmt.Errorf("room %s: you hold no key for its current epoch %d, so you cannot share it; ask a member to rekey", id, chain.Epoch)
			}
			if req.Members, err = c.sealAll(*key, id, chain.Epoch, added); err != nil {
				return api.Room{}, err
			}
		default:
			for _, m := range added {
				req.Members = append(req.Members, api.KeyGrant{Member: m.User})
			}
		}
		var r api.Room
		var info sendInfo
		err = c.doTracked(ctx, http.MethodPost, "/v1/rooms/"+id+"/members", nil, req, &r, &info)
		if info.resent && api.IsCode(err, api.CodeConflict) {
			if room, ok := c.committed(ctx, id, req.Statement, nil); ok {
				return room, nil
			}
		}
		if api.IsCode(err, api.CodeConflict) && attempt == 0 {
			continue
		}
		if err == nil {
			c.markStale(id)
		}
		return r, err
	}
}

// RemoveMember removes user (name or key) from the room and rekeys it in
// the same request: the removed member holds no key for what follows. Room
// admins may remove anyone; any member may remove itself (leave).
func (c *Client) RemoveMember(ctx context.Context, roomRef, user string) (api.Room, error) {
	id, snap, err := c.readRoomRef(ctx, roomRef)
	if err != nil {
		return api.Room{}, err
	}
	key := ""
	for _, m := range snap.chain.Members {
		if m.User == user || m.Name == user {
			key = m.User
		}
	}
	if key == "" {
		return api.Room{}, api.Errorf(api.CodeNotFound, "%s is not a member of room %s: see `unibus room show %s`", user, id, id)
	}
	return c.rekey(ctx, snap, []string{key})
}

// LeaveRoom takes the caller out of the room: a removal of itself, which
// any member may sign, made in one request with the rekey that seals a
// fresh key to every member that remains, so that the caller holds no key
// of what is sent after it. Revoked members go first, in a rekey of their
// own, unless the caller is a room admin (whose removal takes them along).
// The room's last member cannot leave it: it deletes it ([Client.DeleteRoom]).
func (c *Client) LeaveRoom(ctx context.Context, roomRef string) (api.Room, error) {
	id, snap, err := c.readRoomRef(ctx, roomRef)
	if err != nil {
		return api.Room{}, err
	}
	self := c.id.UserKey()
	me, ok := snap.chain.Member(self)
	if !ok {
		return api.Room{}, api.Errorf(api.CodeNotFound, "you are not a member of room %s: see `unibus room list`", id)
	}
	revoked := snap.revoked()
	others := 0
	for _, m := range snap.chain.Members {
		if m.User != self && !revoked[m.User] {
			others++
		}
	}
	if others == 0 {
		return api.Room{}, api.Errorf(api.CodeInvalid, "you are the last member of room %s: a room keeps at least one member; delete it instead with `unibus room delete %s`", id, id)
	}
	if len(revoked) > 0 && me.Role != roomchain.RoleAdmin {
		// A member's own removal names itself alone.
		if _, err := c.rekey(ctx, snap, nil); err != nil {
			return api.Room{}, err
		}
		if snap, err = c.readRoom(ctx, id); err != nil {
			return api.Room{}, err
		}
	}
	r, err := c.rekey(ctx, snap, []string{self})
	if err != nil {
		return api.Room{}, err
	}
	c.forgetRoom(id, false)
	return r, nil
}

// DeleteRoom deletes a room for every member: the room, its members, its
// sealed keys, its membership history, its messages and its files. Only a
// room admin may, or the room's last member (membershipd checks it). It
// returns the room as it was. Members' clients learn of it from the
// room's event, and their reads of it end.
func (c *Client) DeleteRoom(ctx context.Context, roomRef string) (api.Room, error) {
	id, err := c.ResolveRoom(ctx, roomRef)
	if err != nil {
		return api.Room{}, err
	}
	var r api.Room
	var info sendInfo
	if err := c.doTracked(ctx, http.MethodDelete, "/v1/rooms/"+id, nil, nil, &r, &info); err != nil {
		if !info.resent || !api.IsCode(err, api.CodeNotFound) {
			return api.Room{}, err
		}
		// Sent again after a node that deleted the room could not
		// answer: the room it was, as far as this client knows it.
		r = api.Room{ID: id}
		if s := c.roomState(id).snap.Load(); s != nil {
			r = s.room
		} else if !api.ValidRoomID(roomRef) {
			r.Name = roomRef
		}
	}
	c.forgetRoom(id, true)
	return r, nil
}

// Rekey starts a new epoch of the room with a fresh key sealed to every
// current member. Any member may rekey.
func (c *Client) Rekey(ctx context.Context, roomRef string) (api.Room, error) {
	_, snap, err := c.readRoomRef(ctx, roomRef)
	if err != nil {
		return api.Room{}, err
	}
	return c.rekey(ctx, snap, nil)
}

// readRoomRef resolves roomRef (ResolveRoom) and reads the room as
// readRoom does, for the changes that act on its member set.
func (c *Client) readRoomRef(ctx context.Context, roomRef string) (string, *roomSnapshot, error) {
	id, err := c.ResolveRoom(ctx, roomRef)
	if err != nil {
		return "", nil, err
	}
	snap, err := c.readRoom(ctx, id)
	return id, snap, err
}

// rekey moves the room to the next epoch without the removed members,
// sealing the new key only to members of the verified history.
func (c *Client) rekey(ctx context.Context, snap *roomSnapshot, remove []string) (api.Room, error) {
	chain := snap.chain
	gone := make(map[string]bool, len(remove))
	for _, r := range remove {
		gone[r] = true
	}
	// Revoked users go with every rekey: the server refuses a key for them,
	// and any member may remove them.
	allRevoked := true
	revoked := snap.revoked()
	for _, r := range remove {
		allRevoked = allRevoked && revoked[r]
	}
	for u := range revoked {
		if !gone[u] {
			gone[u] = true
			remove = append(remove, u)
		}
	}
	var keep []roomchain.Member
	for _, m := range chain.Members {
		if !gone[m.User] {
			keep = append(keep, m)
		}
	}
	if len(keep) == 0 {
		return api.Room{}, errors.New("a room must keep at least one member: add someone before you leave")
	}
	kind := roomchain.KindRekey
	if len(remove) > 0 {
		kind = roomchain.KindRemove
	}
	next := chain.Epoch + 1
	req := api.RekeyRequest{FromEpoch: chain.Epoch, Remove: remove}
	reason := ""
	if len(remove) > 0 && allRevoked {
		reason = roomchain.ReasonRevoked
	}
	var err error
	if req.Statement, err = c.statement(chain, kind, next, nil, remove, reason); err != nil {
		return api.Room{}, err
	}
	if snap.room.Encrypted {
		key, err := e2ee.NewRoomKey(rand.Reader)
		if err != nil {
			return api.Room{}, err
		}
		if req.Keys, err = c.sealAll(key, chain.Room, next, keep); err != nil {
			return api.Room{}, err
		}
	}
	var r api.Room
	var info sendInfo
	err = c.doTracked(ctx, http.MethodPost, "/v1/rooms/"+chain.Room+"/rekey", nil, req, &r, &info)
	// Sent again after a node that may have done it: refused as a change
	// of the room (conflict) or, when the caller removed itself, as a
	// room no longer its own (not found).
	if info.resent && (api.IsCode(err, api.CodeConflict) || gone[c.id.UserKey()] && api.IsCode(err, api.CodeNotFound)) {
		var left *api.Room
		if gone[c.id.UserKey()] {
			without := snap.room
			without.Epoch, without.HeadSeq, without.HeadHash = next, chain.Seq+1, req.Statement.HashHex()
			without.Members = slices.DeleteFunc(slices.Clone(snap.room.Members), func(m api.Member) bool { return gone[m.User] })
			left = &without
		}
		if room, ok := c.committed(ctx, chain.Room, req.Statement, left); ok {
			return room, nil
		}
	}
	if api.IsCode(err, api.CodeConflict) {
		return api.Room{}, fmt.Errorf("room %s changed while rekeying (another member rekeyed or added someone): %w; run the command again", chain.Room, err)
	}
	if err == nil {
		c.markStale(chain.Room)
	}
	return r, err
}

// sealAll seals key to every member, spread over the machine's cores: a
// 10,000-member rekey is 10,000 X25519 agreements.
func (c *Client) sealAll(key e2ee.RoomKey, room string, epoch uint64, members []roomchain.Member) ([]api.KeyGrant, error) {
	grants := make([]api.KeyGrant, len(members))
	err := parallel.For(len(members), 1, func(i int) error {
		sealed, err := c.seal(key, room, epoch, members[i].Public)
		if err != nil {
			return err
		}
		grants[i] = api.KeyGrant{Member: members[i].User, SealedKey: sealed}
		return nil
	})
	return grants, err
}
