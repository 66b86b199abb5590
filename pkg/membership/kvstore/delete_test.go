package kvstore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/enmanuel/unibus/internal/testutil/testnats"
	"github.com/enmanuel/unibus/internal/testutil/teststore"
	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/membership/kvstore"
	"github.com/enmanuel/unibus/pkg/membership/store"
)

// TestKVDeleteRoomOnTwoNodes deletes a room through one node: the other
// node's cache, which served the room's membership, drops it within
// moments, and no key of the room is left in any bucket, its large room
// state included.
func TestKVDeleteRoomOnTwoNodes(t *testing.T) {
	ctx := context.Background()
	ns, prefix, a, b := twoNodes(t)
	// Every room state goes to the data bucket, in parts.
	kvstore.SetKVValueSizes(a, 64<<10, 16)
	f := newDuo(t, a)
	if _, err := a.Rekey(ctx, f.c.NextRekey(f.aliceID, []api.User{f.alice, f.bob})); err != nil {
		t.Fatal(err)
	}
	if err := a.AddBlob(ctx, api.Blob{ID: fmt.Sprintf("%064x", 1), Room: f.r.ID, Size: 1, Uploader: f.bob.User, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "node b sees bob in the room", func() bool {
		ok, err := b.IsMember(ctx, f.r.ID, f.bob.User)
		return err == nil && ok
	})
	if keys := roomKeys(t, ns, prefix, f.r.ID); len(keys) == 0 {
		t.Fatal("no key of the room in the buckets before its deletion: the test sees nothing")
	}

	d, err := a.DeleteRoom(ctx, f.r.ID, f.alice.User)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Blobs) != 1 || len(d.Members) != 2 {
		t.Errorf("DeleteRoom = %+v; want its 2 members and 1 blob", d)
	}
	waitFor(t, 5*time.Second, "node b forgets the deleted room", func() bool {
		_, err := b.IsMember(ctx, f.r.ID, f.bob.User)
		rooms, rerr := b.RoomsOf(ctx, f.bob.User)
		return api.IsCode(err, api.CodeNotFound) && rerr == nil && len(rooms) == 0
	})
	if _, err := b.GetRoom(ctx, f.r.ID); !api.IsCode(err, api.CodeNotFound) {
		t.Errorf("GetRoom through node b after the deletion: %v; want not_found", err)
	}
	if keys := roomKeys(t, ns, prefix, f.r.ID); len(keys) != 0 {
		t.Errorf("keys of the deleted room left in the buckets: %v", keys)
	}
	if removed, err := a.(sweeper).Sweep(ctx, 0); err != nil || removed != 0 {
		t.Errorf("Sweep after the deletion = %d, %v; want nothing left behind", removed, err)
	}
	// A node opened after the deletion never sees the room.
	fresh := teststore.KV(t, ns, prefix)
	if _, err := fresh.GetRoom(ctx, f.r.ID); !api.IsCode(err, api.CodeNotFound) {
		t.Errorf("GetRoom through a node opened after the deletion: %v; want not_found", err)
	}
}

// TestKVDeleteOvertaken holds a deletion after its checks and before its
// commit while another node rekeys the room: the deletion gets conflict
// and the room is whole, the rekey in it.
func TestKVDeleteOvertaken(t *testing.T) {
	ctx := context.Background()
	_, _, a, b := twoNodes(t)
	f := newDuo(t, a)
	held, release := make(chan struct{}), make(chan struct{})
	kvstore.SetKVTestHook(a, func(step string) error {
		if step == "delete" {
			close(held)
			<-release
		}
		return nil
	})
	errc := make(chan error, 1)
	go func() {
		_, err := a.DeleteRoom(ctx, f.r.ID, f.alice.User)
		errc <- err
	}()
	<-held
	rk := f.c.NextRekey(f.aliceID, []api.User{f.alice, f.bob})
	if _, err := b.Rekey(ctx, rk); err != nil {
		t.Fatalf("rekey through node b while a deletion is held: %v", err)
	}
	f.c.Accept(rk.Statement)
	close(release)
	if err := <-errc; !api.IsCode(err, api.CodeConflict) {
		t.Fatalf("overtaken DeleteRoom: %v; want conflict", err)
	}
	kvstore.SetKVTestHook(a, nil)
	for i, node := range []store.Store{a, b} {
		waitFor(t, 5*time.Second, fmt.Sprintf("node %d has the room at epoch 2 after the overtaken deletion", i), func() bool {
			got, err := node.GetRoom(ctx, f.r.ID)
			return err == nil && got.Epoch == 2
		})
	}
	f.c.Stored(a, "history after the overtaken deletion")
}

// roomKeys lists every key of room in the buckets of prefix.
func roomKeys(t testing.TB, ns *server.Server, prefix, room string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	js := testnats.JetStream(t, ns)
	var out []string
	for _, bucket := range []string{"rooms", "roomdata", "blobs"} {
		kv, err := js.KeyValue(ctx, prefix+"_"+bucket)
		if err != nil {
			t.Fatal(err)
		}
		keys, err := kv.ListKeys(ctx)
		if errors.Is(err, jetstream.ErrNoKeysFound) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		for k := range keys.Keys() {
			if strings.Contains(k, room) {
				out = append(out, bucket+":"+k)
			}
		}
		keys.Stop()
	}
	return out
}
