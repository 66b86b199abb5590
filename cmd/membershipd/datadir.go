package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// One membershipd per data directory. At start, before it opens anything,
// membershipd takes an exclusive lock (flock) on a lock file for its --db
// ("<db>.lock", whichever --store: the host tools look there) and, with the
// embedded NATS, for its --nats-store ("<nats-store>/membershipd.lock").
// A second membershipd on either refuses, naming the first from what the
// file says (its pid, start time and store). The kernel drops the lock
// when its holder exits, however it exits, so the file a crashed server
// leaves behind blocks nobody; it is left in place.
//
// The host tools never take these locks: `membershipd user` works on the
// SQLite file while a server runs on it, by design. With --store sqlite
// they check the --db lock only to learn that a server serving --store kv
// holds it, and then refuse: their change would not reach that server.
//
// What a start makes from nothing (directories, the database, the key
// files, the lock files) is removed again if the start fails.

// natsStoreLockFile is the lock file in a --nats-store directory; the
// lock file of a --db is dbLockPath.
const natsStoreLockFile = "membershipd.lock"

// dbLockPath is the lock file of the database at db.
func dbLockPath(db string) string { return db + ".lock" }

// lockRetries and lockRetryWait: a host tool's check holds a shared lock
// on a --db lock file for an instant, so a busy lock is tried again a few
// times before a start is refused.
const (
	lockRetries   = 5
	lockRetryWait = 20 * time.Millisecond
)

// holder is what a lock file says about the membershipd that holds it.
type holder struct {
	PID     int       `json:"pid"`
	Started time.Time `json:"started"`
	Store   string    `json:"store"` // sqlite or kv
	// NATSURL (credentials removed) and ControlKey (its file) are where a
	// host tool reaches the KV store of a server with --store kv.
	NATSURL    string `json:"nats_url,omitempty"`
	ControlKey string `json:"control_key,omitempty"`
}

func (h holder) String() string {
	if h.PID == 0 {
		return "another membershipd"
	}
	return fmt.Sprintf("membershipd pid %d (started %s, --store %s)", h.PID, h.Started.Format(time.DateTime+" MST"), h.Store)
}

// startPaths are the paths of one start, from its flags.
type startPaths struct {
	store                  string // sqlite or kv
	db, storeDir           string
	natsStore              string // with embedded
	embedded, enforce      bool
	controlKey, serviceKey string // the flags; empty means the default
	systemKey              string // the flag; empty means the default
}

// claim is what one start holds and has made on disk.
type claim struct {
	locks []*os.File
	h     holder
	made  []string // absolute paths that did not exist, topmost first
}

// claimStart takes the locks of a start's data directories and notes what
// the start may make, for undo. An error names the holder and says what
// to do; nothing is left behind.
func claimStart(p startPaths) (*claim, error) {
	type target struct{ flag, path, lock string }
	targets := []target{{"--db", p.db, dbLockPath(p.db)}}
	creates := []string{dbLockPath(p.db)}
	if p.store == "sqlite" {
		creates = append(creates, p.db, p.db+"-wal", p.db+"-shm", p.db+"-journal", p.storeDir)
	}
	h := holder{PID: os.Getpid(), Started: time.Now().UTC().Truncate(time.Second), Store: p.store, ControlKey: p.controlKey}
	if p.embedded {
		lock := filepath.Join(p.natsStore, natsStoreLockFile)
		targets = append(targets, target{"--nats-store", p.natsStore, lock})
		h.ControlKey = keyFile(h.ControlKey, p.natsStore, controlKeyFile)
		creates = append(creates, p.natsStore, lock, h.ControlKey)
		if p.enforce {
			creates = append(creates, keyFile(p.serviceKey, p.natsStore, serviceKeyFile))
		}
		creates = append(creates, keyFile(p.systemKey, p.natsStore, systemKeyFile))
	}
	if h.ControlKey != "" {
		if abs, err := filepath.Abs(h.ControlKey); err == nil {
			h.ControlKey = abs
		}
	}
	c := &claim{h: h}
	for _, path := range creates {
		c.note(path)
	}
	for _, t := range targets {
		if err := c.lock(t.lock); err != nil {
			c.undo()
			c.release()
			var busy heldError
			if errors.As(err, &busy) {
				return nil, fmt.Errorf("%s %s is in use by %s: one membershipd per data directory: stop that one first, or give this one its own --db and --nats-store (lock file %s)", t.flag, t.path, busy.h, t.lock)
			}
			return nil, fmt.Errorf("lock %s (%s): %w", t.path, t.flag, err)
		}
	}
	return c, nil
}

// heldError is a lock file held by h.
type heldError struct{ h holder }

func (e heldError) Error() string { return "held by " + e.h.String() }

// lock takes the lock file at path, making it (and its directory, 0700)
// if needed, and writes c's holder into it.
func (c *claim) lock(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	for i := 0; ; i++ {
		ok, err := tryLock(f, true)
		if err != nil {
			f.Close()
			return err
		}
		if ok {
			break
		}
		if i == lockRetries {
			h := readHolder(f)
			f.Close()
			return heldError{h}
		}
		time.Sleep(lockRetryWait)
	}
	c.locks = append(c.locks, f)
	if err := writeHolder(f, c.h); err != nil {
		return err
	}
	return nil
}

// setNATS records, once the bus is up, the NATS URL at which host tools
// reach this server's KV store.
func (c *claim) setNATS(url string) {
	if c.h.Store != "kv" {
		return
	}
	c.h.NATSURL = redactURL(url)
	for _, f := range c.locks {
		writeHolder(f, c.h) // informative only: a failure changes nothing
	}
}

// note records path, or its topmost missing directory, if it does not
// exist yet: undo removes it.
func (c *claim) note(path string) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return
	}
	top := ""
	for p := abs; ; p = filepath.Dir(p) {
		if _, err := os.Lstat(p); err == nil || !errors.Is(err, fs.ErrNotExist) {
			break
		}
		top = p
		if filepath.Dir(p) == p {
			break
		}
	}
	if top == "" {
		return
	}
	for _, m := range c.made {
		if m == top || strings.HasPrefix(top, m+string(filepath.Separator)) {
			return
		}
	}
	c.made = append(c.made, top)
}

// undo removes what the start made: it is called, with the locks still
// held, when the start fails.
func (c *claim) undo() {
	for i := len(c.made) - 1; i >= 0; i-- {
		os.RemoveAll(c.made[i])
	}
	c.made = nil
}

// release drops the locks; the files stay.
func (c *claim) release() {
	for _, f := range c.locks {
		f.Close()
	}
	c.locks = nil
}

func writeHolder(f *os.File, h holder) error {
	b, err := json.Marshal(h)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if _, err := f.WriteAt(b, 0); err != nil {
		return err
	}
	return f.Truncate(int64(len(b)))
}

// readHolder reads what the lock file f says; the zero holder if it says
// nothing readable.
func readHolder(f *os.File) holder {
	var h holder
	b := make([]byte, 4096)
	n, _ := f.ReadAt(b, 0)
	json.Unmarshal(b[:n], &h)
	return h
}

// kvServer returns the running membershipd, if any, that serves the data
// directory of the database at db from the KV store (--store kv): the
// holder named in db's lock file, if it says kv and its lock is held. A
// lock file left by a server that stopped, and any other file of an
// earlier run, say nothing.
func kvServer(db string) (holder, bool) {
	f, err := os.Open(dbLockPath(db))
	if err != nil {
		return holder{}, false
	}
	defer f.Close()
	h := readHolder(f)
	if h.Store != "kv" {
		return holder{}, false
	}
	// A shared lock, released at once: it is refused while a server
	// holds the file.
	ok, err := tryLock(f, false)
	if err != nil || ok {
		return holder{}, false
	}
	return h, true
}
