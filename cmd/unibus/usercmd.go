package main

import (
	"context"
	"fmt"

	"github.com/enmanuel/unibus/pkg/api"
)

// userJSON is a user as --json prints it: the API's user with its
// fingerprint.
type userJSON struct {
	api.User
	Fingerprint string `json:"fingerprint"`
}

func toUserJSON(u api.User) userJSON { return userJSON{User: u, Fingerprint: u.Fingerprint()} }

func userAdd(ctx context.Context, x *invocation, args []string) error {
	c, err := x.connect()
	if err != nil {
		return err
	}
	defer c.Close()
	u, err := c.AddUser(ctx, args[0], x.opts.admin)
	if err != nil {
		return err
	}
	if x.opts.json {
		return writeJSON(x.stdout, toUserJSON(u))
	}
	_, err = fmt.Fprintf(x.stdout, "added %s (%s) %s\n", printName(u.Name), u.Role, u.User)
	return err
}

func userList(ctx context.Context, x *invocation, _ []string) error {
	c, err := x.connect()
	if err != nil {
		return err
	}
	defer c.Close()
	users, err := c.Users(ctx)
	if err != nil {
		return err
	}
	if x.opts.json {
		out := make([]userJSON, 0, len(users))
		for _, u := range users {
			out = append(out, toUserJSON(u))
		}
		return writeJSON(x.stdout, out)
	}
	rows := make([][]string, 0, len(users))
	for _, u := range users {
		rows = append(rows, []string{printName(u.Name), u.Role, u.Status, u.Fingerprint(), u.User})
	}
	return writeTable(x.stdout, []string{"NAME", "ROLE", "STATUS", "FINGERPRINT", "USER"}, rows)
}

func userRevoke(ctx context.Context, x *invocation, args []string) error {
	c, err := x.connect()
	if err != nil {
		return err
	}
	defer c.Close()
	u, err := c.RevokeUser(ctx, args[0])
	if err != nil {
		return err
	}
	if x.opts.json {
		return writeJSON(x.stdout, toUserJSON(u))
	}
	_, err = fmt.Fprintf(x.stdout, "revoked %s\n", printName(u.Name))
	return err
}
