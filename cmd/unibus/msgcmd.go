package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/enmanuel/unibus/pkg/client"
	"github.com/enmanuel/unibus/pkg/e2ee"
	"github.com/enmanuel/unibus/pkg/identity"
)

func send(ctx context.Context, x *invocation, args []string) error {
	var text string
	switch {
	case len(args) == 2:
		text = args[1]
	case x.opts.file == "":
		var err error
		if text, err = readMessage(ctx, x); err != nil {
			return err
		}
	}
	if strings.TrimSpace(text) == "" && x.opts.file == "" {
		return errors.New("nothing to send: give the text as an argument or on stdin, or attach a file with --file PATH")
	}
	c, err := x.connect()
	if err != nil {
		return err
	}
	defer c.Close()
	room, err := c.ResolveRoom(ctx, args[0])
	if err != nil {
		return err
	}
	var id string
	if x.opts.file != "" {
		bar := newProgressBar(x.stderr, "sending "+filepath.Base(x.opts.file))
		id, err = c.SendFile(ctx, room, x.opts.file, text, bar.progressFunc())
		bar.finish()
	} else {
		id, err = c.Send(ctx, room, client.Message{Text: text})
	}
	if err != nil {
		return err
	}
	if x.opts.json {
		return writeJSON(x.stdout, struct {
			ID   string `json:"id"`
			Room string `json:"room"`
		}{id, room})
	}
	_, err = fmt.Fprintln(x.stdout, id)
	return err
}

// readMessage reads a message's text from stdin, up to the largest message
// there is, without a final newline. Cancelling ctx abandons the read.
func readMessage(ctx context.Context, x *invocation) (string, error) {
	if isTerminal(x.stdin) {
		fmt.Fprintln(x.stderr, "reading the message from stdin; end it with Ctrl-D")
	}
	type result struct {
		b   []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		b, err := io.ReadAll(io.LimitReader(x.stdin, e2ee.MaxPlaintext+1))
		done <- result{b, err}
	}()
	var res result
	select {
	case <-ctx.Done():
		return "", ctx.Err()
	case res = <-done:
	}
	if res.err != nil {
		return "", fmt.Errorf("read the message from stdin: %w (give the text as an argument instead)", res.err)
	}
	if len(res.b) > e2ee.MaxPlaintext {
		return "", fmt.Errorf("the message on stdin is over the limit of %s: send it as a file with --file PATH", humanSize(e2ee.MaxPlaintext))
	}
	text := strings.TrimSuffix(string(res.b), "\n")
	return strings.TrimSuffix(text, "\r"), nil
}

// messageJSON is one message as `read --json` prints it. An unreadable
// message has an error and no text; the file's key and blob never appear.
type messageJSON struct {
	ID         string    `json:"id"`
	Room       string    `json:"room"`
	Epoch      uint64    `json:"epoch"`
	Sender     string    `json:"sender"`
	SenderName string    `json:"sender_name"`
	Time       string    `json:"time"`
	Text       *string   `json:"text,omitempty"`
	File       *fileJSON `json:"file,omitempty"`
	Error      string    `json:"error,omitempty"`
}

type fileJSON struct {
	Name string `json:"name"`
	Size int64  `json:"size"`
}

func toMessageJSON(m client.Received) messageJSON {
	j := messageJSON{ID: m.ID, Room: m.Room, Epoch: m.Epoch, Sender: m.Sender, SenderName: m.SenderName, Time: m.Time.UTC().Format(time.RFC3339Nano)}
	if m.Err != nil {
		j.Error = m.Err.Error()
		return j
	}
	j.Text = &m.Text
	if m.File != nil {
		j.File = &fileJSON{Name: m.File.Name, Size: m.File.Size}
	}
	return j
}

// formatMessage is one message as `read` prints it:
//
//	2006-01-02 15:04:05 alice: TEXT [file: NAME, SIZE]
func formatMessage(m client.Received) string {
	sender := m.SenderName
	if sender == "" {
		sender = m.Sender
	}
	if sender == "" {
		sender = "?"
	}
	sender = printName(sender)
	var body string
	switch {
	case m.Err != nil:
		body = "[unreadable: " + m.Err.Error() + "]"
	case m.File != nil:
		attach := fmt.Sprintf("[file: %s, %s]", printName(m.File.Name), humanSize(m.File.Size))
		body = strings.TrimPrefix(m.Text+" "+attach, " ")
	default:
		body = m.Text
	}
	return clean(localTime(m.Time) + " " + sender + ": " + body)
}

func read(ctx context.Context, x *invocation, args []string) error {
	if x.opts.last < 0 {
		return usagef("--last %d: give 0 (all) or more", x.opts.last)
	}
	var link *linkNotices
	var adjust []func(*client.Config)
	if x.opts.follow {
		link = &linkNotices{w: x.stderr}
		defer link.stop()
		adjust = append(adjust, func(cfg *client.Config) { cfg.OnDisconnect, cfg.OnReconnect = link.lost, link.back })
	}
	c, err := x.connect(adjust...)
	if err != nil {
		return err
	}
	defer c.Close()
	enc := json.NewEncoder(x.stdout)
	// Each message is one write, so that a follower sees it at once.
	return c.Read(ctx, args[0], client.ReadOptions{Last: x.opts.last, Follow: x.opts.follow}, func(m client.Received) error {
		if x.opts.json {
			return enc.Encode(toMessageJSON(m))
		}
		_, err := io.WriteString(x.stdout, formatMessage(m)+"\n")
		return err
	})
}

// linkGrace is how long a lost bus connection may take to come back
// before a follower says it was lost: membershipd closes a user's
// connections when its rooms change, and the SDK is back at once.
const linkGrace = time.Second

// linkNotices tells a follower's user on stderr, never on stdout (which
// with --json carries nothing but messages), that the bus connection was
// lost, once, and that it is back, once: "connection lost, retrying…",
// then "connection back". A loss shorter than linkGrace goes unsaid.
type linkNotices struct {
	w io.Writer

	mu      sync.Mutex
	pending *time.Timer // a loss not said yet
	said    bool        // the loss was said, its end not yet
	stopped bool
}

// lost is the SDK's OnDisconnect.
func (n *linkNotices) lost(err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.stopped || n.said || n.pending != nil {
		return
	}
	why := ""
	if err != nil {
		why = " (" + err.Error() + ")"
	}
	n.pending = time.AfterFunc(linkGrace, func() {
		n.mu.Lock()
		defer n.mu.Unlock()
		if n.pending == nil || n.stopped {
			return
		}
		n.pending, n.said = nil, true
		fmt.Fprintf(n.w, "unibus: connection lost%s, retrying…\n", why)
	})
}

// back is the SDK's OnReconnect.
func (n *linkNotices) back() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.pending != nil {
		n.pending.Stop()
		n.pending = nil
	}
	if n.said && !n.stopped {
		n.said = false
		fmt.Fprintln(n.w, "unibus: connection back")
	}
}

// stop ends the notices: nothing is written after it.
func (n *linkNotices) stop() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.stopped = true
	if n.pending != nil {
		n.pending.Stop()
		n.pending = nil
	}
}

func fetch(ctx context.Context, x *invocation, args []string) error {
	room, msgID := args[0], args[1]
	c, err := x.connect()
	if err != nil {
		return err
	}
	defer c.Close()
	bar := newProgressBar(x.stderr, "fetching")
	defer bar.finish()
	if x.opts.out == "-" {
		_, err := c.FetchFile(ctx, room, msgID, x.stdout, bar.progressFunc())
		return err
	}

	// The file goes to dir under the attachment's name, or to target when
	// -o names a file.
	dir, target := ".", ""
	if o := x.opts.out; o != "" {
		if fi, err := os.Stat(o); err == nil && fi.IsDir() {
			dir = o
		} else {
			dir, target = filepath.Dir(o), o
			if err := checkFree(target, x.opts.force); err != nil {
				return err
			}
		}
	}
	tmp, err := os.CreateTemp(dir, ".unibus-fetch-*")
	if err != nil {
		return fmt.Errorf("cannot write the file in %s: %w (save it elsewhere with -o PATH)", dir, err)
	}
	placed := false
	defer func() {
		if !placed {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	ref, err := c.FetchFile(ctx, room, msgID, tmp, bar.progressFunc())
	if err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("write the file in %s: %w (save it elsewhere with -o PATH)", dir, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write the file in %s: %w (save it elsewhere with -o PATH)", dir, err)
	}
	if target == "" {
		name, err := safeName(ref.Name)
		if err != nil {
			return err
		}
		target = filepath.Join(dir, name)
	}
	if err := place(tmp.Name(), target, x.opts.force); err != nil {
		return err
	}
	placed = true
	bar.finish()
	if x.opts.json {
		return writeJSON(x.stdout, struct {
			Name string `json:"name"`
			Size int64  `json:"size"`
			Path string `json:"path"`
		}{ref.Name, ref.Size, target})
	}
	_, err = fmt.Fprintf(x.stdout, "saved %s (%s) to %s\n", printName(ref.Name), humanSize(ref.Size), printName(target))
	return err
}

// safeName turns an attachment's name, chosen by its sender, into a name
// for a file in the current directory, or refuses it: no path, and no
// character a name may not hold (identity.UnsafeRune), so that a name
// such as "invoice\u202efdp.exe" does not land on disk looking like
// "invoiceexe.pdf".
func safeName(name string) (string, error) {
	base := filepath.Base(name)
	if base == "" || base == "." || base == ".." || strings.ContainsAny(base, `/\`) || strings.ContainsFunc(base, identity.UnsafeRune) {
		return "", fmt.Errorf("the attachment's name %q is not a safe file name: choose one with -o PATH", name)
	}
	return base, nil
}

// checkFree refuses an existing path unless force is set.
func checkFree(path string, force bool) error {
	if force {
		return nil
	}
	if _, err := os.Lstat(path); err == nil {
		return errExists(path)
	}
	return nil
}

// errExists refuses to replace the file at path.
func errExists(path string) error {
	return fmt.Errorf("%s already exists: pass --force to overwrite it, or -o PATH to save elsewhere", path)
}

// place moves the finished temporary file to path. Without force it never
// replaces a file, even one that appeared during the download: a hard link
// fails if path exists (where links are not supported, it checks first).
func place(tmp, path string, force bool) error {
	if !force {
		err := os.Link(tmp, path)
		switch {
		case err == nil:
			os.Remove(tmp)
			return nil
		case errors.Is(err, fs.ErrExist):
			return errExists(path)
		}
		if err := checkFree(path, false); err != nil {
			return err
		}
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("save the file: %w (save it elsewhere with -o PATH)", err)
	}
	return nil
}
