package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"text/tabwriter"

	"github.com/enmanuel/unibus/pkg/identity"
)

// identityPath returns the --identity path, or an error saying how to set
// one when there is no default.
func (x *invocation) identityPath() (string, error) {
	if x.opts.identity == "" {
		return "", errors.New("no identity file path: there is no home directory to default to; pass --identity PATH or set UNIBUS_IDENTITY")
	}
	return x.opts.identity, nil
}

// loadIdentity reads the caller's identity file.
func (x *invocation) loadIdentity() (*identity.Identity, error) {
	path, err := x.identityPath()
	if err != nil {
		return nil, err
	}
	return identity.Load(path)
}

// idJSON is the JSON form of an identity: only its public half.
type idJSON struct {
	Name        string `json:"name"`
	User        string `json:"user"`
	XKey        string `json:"xkey"`
	Public      string `json:"public"`
	Fingerprint string `json:"fingerprint,omitempty"`
	Path        string `json:"path,omitempty"`
}

func idNew(ctx context.Context, x *invocation, _ []string) error {
	if x.opts.name == "" {
		return usagef("--name is required: the name others will know you by, like --name alice")
	}
	path, err := x.identityPath()
	if err != nil {
		return err
	}
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	// Checked before anything is made: the error names the character
	// (control, bidi, zero-width…) and says what a name may hold.
	if err := identity.CheckName(x.opts.name); err != nil {
		return fmt.Errorf("--name: %w", err)
	}
	id, err := identity.Generate(x.opts.name, nil)
	if err != nil {
		return err
	}
	if err := id.Save(path); err != nil {
		return err
	}
	pub := id.Public()
	if x.opts.json {
		return writeJSON(x.stdout, idJSON{Name: pub.Name, User: pub.User, XKey: pub.XKey, Public: pub.Token(), Path: path})
	}
	_, err = fmt.Fprintf(x.stdout, "saved identity %s to %s (mode 0600: it holds your secret keys; keep it private)\n"+
		"your public identity token, for an admin to run `unibus user add TOKEN`:\n%s\n", pub.Name, path, pub.Token())
	return err
}

func idShow(ctx context.Context, x *invocation, _ []string) error {
	id, err := x.loadIdentity()
	if err != nil {
		return err
	}
	pub := id.Public()
	switch {
	case x.opts.public && x.opts.json:
		return writeJSON(x.stdout, struct {
			Public string `json:"public"`
		}{pub.Token()})
	case x.opts.public:
		_, err := fmt.Fprintln(x.stdout, pub.Token())
		return err
	case x.opts.json:
		return writeJSON(x.stdout, idJSON{Name: pub.Name, User: pub.User, XKey: pub.XKey, Public: pub.Token(), Fingerprint: pub.Fingerprint()})
	}
	tw := tabwriter.NewWriter(x.stdout, 0, 8, 2, ' ', 0)
	fmt.Fprintf(tw, "name:\t%s\n", pub.Name)
	fmt.Fprintf(tw, "user:\t%s\n", pub.User)
	fmt.Fprintf(tw, "xkey:\t%s\n", pub.XKey)
	fmt.Fprintf(tw, "fingerprint:\t%s\n", pub.Fingerprint())
	fmt.Fprintf(tw, "public token:\t%s\n", pub.Token())
	return tw.Flush()
}

func idFingerprint(ctx context.Context, x *invocation, _ []string) error {
	id, err := x.loadIdentity()
	if err != nil {
		return err
	}
	pub := id.Public()
	if x.opts.json {
		return writeJSON(x.stdout, struct {
			Name        string `json:"name"`
			User        string `json:"user"`
			Fingerprint string `json:"fingerprint"`
		}{pub.Name, pub.User, pub.Fingerprint()})
	}
	_, err = fmt.Fprintln(x.stdout, pub.Fingerprint())
	return err
}
