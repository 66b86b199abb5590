package main

import (
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/enmanuel/unibus/internal/testutil/testbus"
	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/client"
)

// TestTwoServersShareTheKVStore runs two membershipd processes (in-process
// run calls) on one set of KV buckets: A with the embedded NATS, B on A's
// NATS with A's control key. What is done through one is seen through the
// other at once, and concurrent rekeys through both never fork a room.
func TestTwoServersShareTheKVStore(t *testing.T) {
	dirA, dirB := t.TempDir(), t.TempDir()
	a := startServer(t, dirA, "--store", "kv")
	aliceID := testbus.NewIdentity(t, "alice")
	bobID := testbus.NewIdentity(t, "bob")
	natsURL := natsURLOf(t, a)
	ctlKey := filepath.Join(dirA, "jetstream", controlKeyFile)
	runCLI(t, 0, "user", "seed", "--store", "kv", "--nats-url", natsURL, "--control-key", ctlKey, "--admin", aliceID.Public().Token())
	b := startServer(t, dirB, "--store", "kv", "--nats-url", natsURL, "--control-key", ctlKey)

	aliceA, aliceB := newClient(t, a.URL, aliceID), newClient(t, b.URL, aliceID)
	if _, err := aliceA.AddUser(ctxT(t), bobID.Public().Token(), false); err != nil {
		t.Fatal(err)
	}
	bobB := newClient(t, b.URL, bobID)
	room, err := aliceA.CreateRoom(ctxT(t), "ops", false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := aliceA.AddMember(ctxT(t), room.ID, "bob"); err != nil {
		t.Fatal(err)
	}
	// Created and joined through A, used through B.
	waitFor(t, time.Second, "room made through A seen through B", func() bool {
		rooms, err := bobB.Rooms(ctxT(t))
		return err == nil && len(rooms) == 1 && rooms[0].ID == room.ID
	})
	if _, err := bobB.Send(ctxT(t), room.ID, client.Message{Text: "via B"}); err != nil {
		t.Fatal(err)
	}

	// Concurrent rekeys through A and B: never a forked room.
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, c := range []*client.Client{aliceA, aliceB} {
		wg.Add(1)
		go func() { defer wg.Done(); _, errs[i] = c.Rekey(ctxT(t), room.ID) }()
	}
	wg.Wait()
	wins := 0
	for _, err := range errs {
		switch {
		case err == nil:
			wins++
		case !api.IsCode(err, api.CodeConflict):
			t.Fatalf("losing rekey: %v; want conflict", err)
		}
	}
	v, err := aliceB.Verify(ctxT(t), room.ID)
	if err != nil || v.Epoch != uint64(1+wins) {
		t.Fatalf("after %d winning rekeys the room is at epoch %d (%v)", wins, v.Epoch, err)
	}
	if _, err := bobB.Send(ctxT(t), room.ID, client.Message{Text: "after the rekeys"}); err != nil {
		t.Fatalf("bob sends at the winner's epoch: %v", err)
	}

	// Removed through A: B refuses bob the room at once.
	if _, err := aliceA.RemoveMember(ctxT(t), room.ID, "bob"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "removal through A seen through B", func() bool {
		_, err := bobB.Room(ctxT(t), room.ID)
		return api.IsCode(err, api.CodeNotFound)
	})
	// Revoked through B: A refuses bob at once.
	if _, err := aliceB.RevokeUser(ctxT(t), "bob"); err != nil {
		t.Fatal(err)
	}
	bobA := newClient(t, a.URL, bobID)
	waitFor(t, time.Second, "revocation through B seen through A", func() bool {
		_, err := bobA.Rooms(ctxT(t))
		return api.IsCode(err, api.CodeRevoked)
	})
}
