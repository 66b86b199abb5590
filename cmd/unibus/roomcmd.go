package main

import (
	"context"
	"fmt"
	"strconv"
	"text/tabwriter"

	"github.com/enmanuel/unibus/pkg/api"
)

func roomCreate(ctx context.Context, x *invocation, args []string) error {
	c, err := x.connect()
	if err != nil {
		return err
	}
	defer c.Close()
	r, err := c.CreateRoom(ctx, args[0], x.opts.cleartext)
	if err != nil {
		return err
	}
	if x.opts.json {
		return writeJSON(x.stdout, r)
	}
	// The id alone, so that ROOM=$(unibus room create ops) works.
	_, err = fmt.Fprintln(x.stdout, r.ID)
	return err
}

func roomList(ctx context.Context, x *invocation, _ []string) error {
	c, err := x.connect()
	if err != nil {
		return err
	}
	defer c.Close()
	rooms, err := c.Rooms(ctx)
	if err != nil {
		return err
	}
	if rooms == nil {
		rooms = []api.Room{}
	}
	if x.opts.json {
		return writeJSON(x.stdout, rooms)
	}
	rows := make([][]string, 0, len(rooms))
	for _, r := range rooms {
		rows = append(rows, []string{r.ID, printName(r.Name), strconv.FormatUint(r.Epoch, 10), yesNo(r.Encrypted)})
	}
	return writeTable(x.stdout, []string{"ID", "NAME", "EPOCH", "ENCRYPTED"}, rows)
}

func roomShow(ctx context.Context, x *invocation, args []string) error {
	c, err := x.connect()
	if err != nil {
		return err
	}
	defer c.Close()
	r, err := c.Room(ctx, args[0])
	if err != nil {
		return err
	}
	// Show only what the room's signed membership history proves: the
	// verification fails loudly if the server's view differs from it.
	v, err := c.Verify(ctx, r.ID)
	if err != nil {
		return err
	}
	if r.Members == nil {
		r.Members = []api.Member{}
	}
	if x.opts.json {
		return writeJSON(x.stdout, r)
	}
	roles := map[string]string{}
	for _, m := range v.Members {
		roles[m.User] = m.Role
	}
	creator := r.Creator
	for _, m := range r.Members {
		if m.User == r.Creator {
			creator = printName(m.Name) + " (" + m.User + ")"
		}
	}
	tw := tabwriter.NewWriter(x.stdout, 0, 8, 2, ' ', 0)
	fmt.Fprintf(tw, "id:\t%s\n", r.ID)
	fmt.Fprintf(tw, "name:\t%s\n", printName(r.Name))
	fmt.Fprintf(tw, "epoch:\t%d\n", r.Epoch)
	fmt.Fprintf(tw, "encrypted:\t%s\n", yesNo(r.Encrypted))
	fmt.Fprintf(tw, "creator:\t%s\n", creator)
	fmt.Fprintf(tw, "created:\t%s\n", localTime(r.CreatedAt))
	fmt.Fprintf(tw, "history:\tstatement %d, head %s (verified; compare out of band)\n", v.HeadSeq, v.HeadHash)
	fmt.Fprintf(tw, "members:\t%d\n", len(r.Members))
	if err := tw.Flush(); err != nil {
		return err
	}
	tw = tabwriter.NewWriter(x.stdout, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "  NAME\tUSER\tROLE\tSINCE")
	for _, m := range r.Members {
		fmt.Fprintf(tw, "  %s\t%s\t%s\tepoch %d\n", printName(m.Name), m.User, roles[m.User], m.Since)
	}
	return tw.Flush()
}

func roomAdd(ctx context.Context, x *invocation, args []string) error {
	c, err := x.connect()
	if err != nil {
		return err
	}
	defer c.Close()
	r, err := c.AddMember(ctx, args[0], args[1])
	if err != nil {
		return err
	}
	if x.opts.json {
		return writeJSON(x.stdout, r)
	}
	_, err = fmt.Fprintf(x.stdout, "added %s to room %s (%s) at epoch %d\n", printName(memberName(r, args[1])), printName(r.Name), r.ID, r.Epoch)
	return err
}

func roomRemove(ctx context.Context, x *invocation, args []string) error {
	c, err := x.connect()
	if err != nil {
		return err
	}
	defer c.Close()
	r, err := c.RemoveMember(ctx, args[0], args[1])
	if err != nil {
		return err
	}
	if x.opts.json {
		return writeJSON(x.stdout, r)
	}
	_, err = fmt.Fprintf(x.stdout, "removed %s from room %s (%s); rekeyed to epoch %d\n", printName(args[1]), printName(r.Name), r.ID, r.Epoch)
	return err
}

func roomRekey(ctx context.Context, x *invocation, args []string) error {
	c, err := x.connect()
	if err != nil {
		return err
	}
	defer c.Close()
	r, err := c.Rekey(ctx, args[0])
	if err != nil {
		return err
	}
	if x.opts.json {
		return writeJSON(x.stdout, r)
	}
	_, err = fmt.Fprintf(x.stdout, "rekeyed room %s (%s) to epoch %d\n", printName(r.Name), r.ID, r.Epoch)
	return err
}

func roomLeave(ctx context.Context, x *invocation, args []string) error {
	c, err := x.connect()
	if err != nil {
		return err
	}
	defer c.Close()
	r, err := c.LeaveRoom(ctx, args[0])
	if err != nil {
		return err
	}
	if x.opts.json {
		return writeJSON(x.stdout, r)
	}
	_, err = fmt.Fprintf(x.stdout, "left room %s (%s); rekeyed to epoch %d without you\n", printName(r.Name), r.ID, r.Epoch)
	return err
}

func roomDelete(ctx context.Context, x *invocation, args []string) error {
	c, err := x.connect()
	if err != nil {
		return err
	}
	defer c.Close()
	r, err := c.DeleteRoom(ctx, args[0])
	if err != nil {
		return err
	}
	if x.opts.json {
		return writeJSON(x.stdout, r)
	}
	_, err = fmt.Fprintf(x.stdout, "deleted room %s (%s), with its members, keys, history and files\n", printName(r.Name), r.ID)
	return err
}

// memberName returns the name of the member of r that user (a name or key)
// names, or user itself when r does not list it.
func memberName(r api.Room, user string) string {
	for _, m := range r.Members {
		if m.User == user || m.Name == user {
			return m.Name
		}
	}
	return user
}
