package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/enmanuel/unibus/pkg/roomchain"
)

// pins is what a client has verified and remembers across runs, like SSH's
// known_hosts: the keys it has seen for each user name (trust on first
// use), and the verified head and state of each room's membership history.
// A changed key for a known name, or a room history that does not extend
// the verified head, is an error, never a silent switch.
type pins struct {
	path string // empty: kept in memory only

	mu    sync.Mutex
	names map[string]string     // user key -> pinned name, derived from Users
	Users map[string]pinnedUser `json:"users"`
	Rooms map[string]pinnedRoom `json:"rooms"`
}

type pinnedUser struct {
	User string `json:"user"`
	XKey string `json:"xkey"`
}

type pinnedRoom struct {
	State roomchain.State  `json:"state"`
	Spans []roomchain.Span `json:"spans"`
}

// ErrKeyChanged reports a user whose keys differ from the ones pinned.
var ErrKeyChanged = errors.New("keys changed")

func loadPins(path string) (*pins, error) {
	p := &pins{path: path, names: map[string]string{}, Users: map[string]pinnedUser{}, Rooms: map[string]pinnedRoom{}}
	if path == "" {
		return p, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return p, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read pinned keys: %w", err)
	}
	if err := json.Unmarshal(b, p); err != nil {
		return nil, fmt.Errorf("pinned keys file %s is corrupt (%v): move it away to start trusting anew", path, err)
	}
	if p.Users == nil {
		p.Users = map[string]pinnedUser{}
	}
	if p.Rooms == nil {
		p.Rooms = map[string]pinnedRoom{}
	}
	for name, u := range p.Users {
		p.names[u.User] = name
	}
	return p, nil
}

// checkUser pins name to its keys on first sight and refuses a change.
func (p *pins) checkUser(name, user, xkey string) error {
	return p.checkUsers([]pinnedName{{name, pinnedUser{User: user, XKey: xkey}}})
}

// pinnedName is one name with the keys seen for it.
type pinnedName struct {
	name string
	keys pinnedUser
}

// checkUsers is checkUser for many names at once, writing the file once:
// a room of thousands is pinned in one write, not one per member.
func (p *pins) checkUsers(names []pinnedName) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	added := false
	for _, n := range names {
		if old, ok := p.Users[n.name]; ok {
			if old != n.keys {
				return fmt.Errorf("%w: %s was %s (xkey %s) when first seen, and is now %s (xkey %s); if this is expected, compare fingerprints out of band and remove the entry from %s", ErrKeyChanged, n.name, old.User, old.XKey, n.keys.User, n.keys.XKey, p.describe())
			}
			continue
		}
		if other, ok := p.names[n.keys.User]; ok && other != n.name {
			return fmt.Errorf("%w: key %s was named %s when first seen, and is now named %s", ErrKeyChanged, n.keys.User, other, n.name)
		}
		p.Users[n.name] = n.keys
		p.names[n.keys.User] = n.name
		added = true
	}
	if !added {
		return nil
	}
	return p.saveLocked()
}

func (p *pins) describe() string {
	if p.path == "" {
		return "this client's memory"
	}
	return p.path
}

// room returns the pinned verified state of a room, if any.
func (p *pins) room(id string) *roomchain.State {
	p.mu.Lock()
	defer p.mu.Unlock()
	r, ok := p.Rooms[id]
	if !ok {
		return nil
	}
	return roomchain.Restore(r.State, r.Spans)
}

// setRoom pins a newly verified state.
func (p *pins) setRoom(st *roomchain.State) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.Rooms[st.Room] = pinnedRoom{State: *st, Spans: st.Spans()}
	return p.saveLocked()
}

// saveLocked writes the file atomically, mode 0600.
func (p *pins) saveLocked() error {
	if p.path == "" {
		return nil
	}
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p.path), 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(p.path), ".pins-*")
	if err != nil {
		return fmt.Errorf("save pinned keys: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("save pinned keys: %w", err)
	}
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), p.path)
}
