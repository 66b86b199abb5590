package client_test

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/client"
)

// TestLeaverHoldsNoKeyOfWhatFollows: bob leaves; his removal of himself
// rekeys the room in the same request, but he made that epoch's key, so
// the members rekey again before they use it: the key dave is added with,
// and what alice and carol send, are of an epoch bob never held.
func TestLeaverHoldsNoKeyOfWhatFollows(t *testing.T) {
	bus, alice, bob, room := twoMembers(t)
	_, carol := bus.User(t, "carol", api.RoleMember)
	_, dave := bus.User(t, "dave", api.RoleMember)
	if _, err := alice.AddMember(ctxT(t), room, "carol"); err != nil {
		t.Fatal(err)
	}
	mustSend(t, alice, room, "before")
	r, err := bob.LeaveRoom(ctxT(t), room)
	if err != nil {
		t.Fatalf("LeaveRoom = %v", err)
	}
	if r.Epoch != 2 {
		t.Fatalf("epoch after bob left = %d; want 2", r.Epoch)
	}
	// An add at bob's epoch would hand dave bob's key: it rekeys.
	if r, err = alice.AddMember(ctxT(t), room, "dave"); err != nil || r.Epoch != 3 {
		t.Fatalf("AddMember after bob left = epoch %d, %v; want a rekeying add to epoch 3", r.Epoch, err)
	}
	mustSend(t, alice, room, "after bob left")
	mustSend(t, carol, room, "me too")
	got := readAll(t, dave, room)
	if len(got) != 3 || got[1].Text != "after bob left" || got[1].Epoch != 3 || got[2].Text != "me too" || got[2].Epoch != 3 {
		t.Fatalf("dave read %+v; want the message before his time unreadable, then alice's and carol's at epoch 3", got)
	}
	if err := bob.Read(ctxT(t), room, client.ReadOptions{}, func(client.Received) error { return nil }); !api.IsCode(err, api.CodeNotFound) {
		t.Fatalf("Read by bob after he left = %v; want not_found", err)
	}
	if _, err := bob.LeaveRoom(ctxT(t), room); !api.IsCode(err, api.CodeNotFound) {
		t.Errorf("LeaveRoom again = %v; want not_found", err)
	}
}

// TestDeletedRoomEndsReads: alice deletes the room while bob follows it:
// his read ends saying so, and nothing of the room is left to either.
func TestDeletedRoomEndsReads(t *testing.T) {
	_, alice, bob, room := twoMembers(t)
	mustSend(t, alice, room, "hello")
	if _, err := bob.DeleteRoom(ctxT(t), room); !api.IsCode(err, api.CodeForbidden) {
		t.Fatalf("DeleteRoom by a plain member = %v; want forbidden", err)
	}
	got := make(chan client.Received, 10)
	done := make(chan error, 1)
	go func() {
		done <- bob.Read(ctxT(t), room, client.ReadOptions{Follow: true}, func(r client.Received) error { got <- r; return nil })
	}()
	if r := <-got; r.Text != "hello" {
		t.Fatalf("followed message = %+v; want hello", r)
	}
	if _, err := alice.DeleteRoom(ctxT(t), room); err != nil {
		t.Fatalf("DeleteRoom by the room admin = %v", err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, client.ErrRoomDeleted) {
			t.Fatalf("bob's followed Read ended with %v; want ErrRoomDeleted", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("bob's followed Read still going 20s after the deletion")
	}
	if _, err := bob.Send(ctxT(t), room, client.Message{Text: "anyone?"}); !errors.Is(err, client.ErrRoomDeleted) {
		t.Errorf("bob's Send to the deleted room = %v; want ErrRoomDeleted", err)
	}
	if err := alice.Read(ctxT(t), room, client.ReadOptions{}, func(client.Received) error { return nil }); !errors.Is(err, client.ErrRoomDeleted) {
		t.Errorf("alice's Read of the room she deleted = %v; want ErrRoomDeleted", err)
	}
	if rooms, err := alice.Rooms(ctxT(t)); err != nil || len(rooms) != 0 {
		t.Errorf("alice's rooms after the deletion = %v, %v; want none", rooms, err)
	}
}

// TestConnectionCallbacks: OnDisconnect is called when the NATS
// connection is lost, not when the client closes it.
func TestConnectionCallbacks(t *testing.T) {
	bus, alice, _, room := twoMembers(t)
	var lost, back atomic.Int32
	c, err := client.New(client.Config{Server: bus.HTTP.URL, Identity: alice.Identity(),
		OnDisconnect: func(error) { lost.Add(1) }, OnReconnect: func() { back.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	mustSend(t, c, room, "hi")
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if lost.Load() != 0 || back.Load() != 0 {
		t.Errorf("callbacks after Close: %d lost, %d back; want none", lost.Load(), back.Load())
	}
}
