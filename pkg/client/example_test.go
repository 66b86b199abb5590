package client_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/enmanuel/unibus/internal/testutil/testbus"
	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/client"
	"github.com/enmanuel/unibus/pkg/identity"
)

// exampleBus starts a whole deployment in a temporary directory, with alice
// seeded as its first admin (as `membershipd user seed --admin` does).
func exampleBus(alice *identity.Identity) (*testbus.Bus, func()) {
	dir, err := os.MkdirTemp("", "unibus-example")
	if err != nil {
		panic(err)
	}
	bus, err := testbus.New(testbus.Options{Dir: dir})
	if err != nil {
		panic(err)
	}
	u := api.User{Public: alice.Public(), Role: api.RoleAdmin, Status: api.StatusActive, CreatedAt: time.Now()}
	if err := bus.Store.CreateUser(context.Background(), u); err != nil {
		panic(err)
	}
	return bus, func() { bus.Close(); os.RemoveAll(dir) }
}

// Two people talk in an encrypted room: alice creates it, registers bob and
// adds him; bob reads what alice sent.
func Example() {
	ctx := context.Background()
	aliceID, _ := identity.Generate("alice", nil)
	bobID, _ := identity.Generate("bob", nil)
	bus, stop := exampleBus(aliceID)
	defer stop()

	alice, _ := client.New(client.Config{Server: bus.HTTP.URL, Identity: aliceID})
	defer alice.Close()
	bob, _ := client.New(client.Config{Server: bus.HTTP.URL, Identity: bobID})
	defer bob.Close()

	if _, err := alice.AddUser(ctx, bobID.Public().Token(), false); err != nil {
		fmt.Println(err)
		return
	}
	room, err := alice.CreateRoom(ctx, "ops", false)
	if err != nil {
		fmt.Println(err)
		return
	}
	if _, err := alice.AddMember(ctx, room.ID, "bob"); err != nil {
		fmt.Println(err)
		return
	}
	if _, err := alice.Send(ctx, room.ID, client.Message{Text: "hello bob"}); err != nil {
		fmt.Println(err)
		return
	}
	err = bob.Read(ctx, room.ID, client.ReadOptions{}, func(m client.Received) error {
		fmt.Printf("%s (epoch %d): %s\n", m.SenderName, m.Epoch, m.Text)
		return nil
	})
	if err != nil {
		fmt.Println(err)
	}
	// Output: alice (epoch 1): hello bob
}

// Removing a member rekeys the room in the same step: what follows is
// sealed under a key the removed member never receives.
func ExampleClient_RemoveMember() {
	ctx := context.Background()
	aliceID, _ := identity.Generate("alice", nil)
	bobID, _ := identity.Generate("bob", nil)
	bus, stop := exampleBus(aliceID)
	defer stop()
	alice, _ := client.New(client.Config{Server: bus.HTTP.URL, Identity: aliceID})
	defer alice.Close()
	alice.AddUser(ctx, bobID.Public().Token(), false)
	room, _ := alice.CreateRoom(ctx, "ops", false)
	alice.AddMember(ctx, room.ID, "bob")

	r, err := alice.RemoveMember(ctx, room.ID, "bob")
	if err != nil {
		fmt.Println(err)
		return
	}
	v, _ := alice.Verify(ctx, room.ID)
	fmt.Printf("epoch %d, %d member(s), history at statement %d\n", r.Epoch, len(v.Members), v.HeadSeq)
	// Output: epoch 2, 1 member(s), history at statement 3
}

// A member leaves a room, and its admin deletes it for everyone: its
// members, keys, history and files.
func ExampleClient_DeleteRoom() {
	ctx := context.Background()
	aliceID, _ := identity.Generate("alice", nil)
	bobID, _ := identity.Generate("bob", nil)
	bus, stop := exampleBus(aliceID)
	defer stop()
	alice, _ := client.New(client.Config{Server: bus.HTTP.URL, Identity: aliceID})
	defer alice.Close()
	bob, _ := client.New(client.Config{Server: bus.HTTP.URL, Identity: bobID})
	defer bob.Close()
	alice.AddUser(ctx, bobID.Public().Token(), false)
	room, _ := alice.CreateRoom(ctx, "ops", false)
	alice.AddMember(ctx, room.ID, "bob")

	left, err := bob.LeaveRoom(ctx, room.ID)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("bob left; the room is at epoch %d\n", left.Epoch)
	if _, err := alice.DeleteRoom(ctx, room.ID); err != nil {
		fmt.Println(err)
		return
	}
	rooms, _ := alice.Rooms(ctx)
	fmt.Printf("alice has %d room(s)\n", len(rooms))
	// Output:
	// bob left; the room is at epoch 2
	// alice has 0 room(s)
}

// A client of a cluster is given every node's URL: a node that is down is
// passed over, and the one that answered is asked first the next time.
// When no node answers, the error names each node tried, and why.
func ExampleConfig_servers() {
	ctx := context.Background()
	aliceID, _ := identity.Generate("alice", nil)
	bus, stop := exampleBus(aliceID)
	defer stop()
	const down = "http://127.0.0.1:1" // nobody listens there

	alice, _ := client.New(client.Config{Servers: []string{down, bus.HTTP.URL}, Identity: aliceID})
	defer alice.Close()
	me, err := alice.Me(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("answered:", me.Name)

	lost, _ := client.New(client.Config{Servers: []string{down}, Identity: aliceID, Timeout: time.Second})
	defer lost.Close()
	_, err = lost.Me(ctx)
	var ue *client.UnreachableError
	if errors.As(err, &ue) {
		for _, f := range ue.Tried {
			fmt.Println("tried:", f.Node, "-", f.Reason)
		}
	}
	// Output:
	// answered: alice
	// tried: 127.0.0.1:1 - connection refused
}
