package bench

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"net/url"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/e2ee"
	"github.com/enmanuel/unibus/pkg/identity"
	"github.com/enmanuel/unibus/pkg/roomchain"
)

// each runs fn(i) for i in [0, n) from --concurrency workers, stopping at
// the first error.
func (r *run) each(ctx context.Context, n int, what string, fn func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		next    atomic.Int64
		done    atomic.Int64
		wg      sync.WaitGroup
		failure firstError
	)
	lastSaid := time.Now()
	var sayMu sync.Mutex
	for range min(r.o.Concurrency, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(ctx, i); err != nil {
					failure.set(err)
					cancel()
					return
				}
				d := done.Add(1)
				sayMu.Lock()
				if time.Since(lastSaid) > 2*time.Second {
					lastSaid = time.Now()
					r.say("  %s: %d of %d", what, d, n)
				}
				sayMu.Unlock()
			}
		}()
	}
	wg.Wait()
	if err := failure.get(); err != nil {
		return err
	}
	return ctx.Err()
}

// fitsRateLimit refuses, before anything is made, a rekey part whose set-up
// (n registrations and the bulk adds, all by the caller) cannot fit in
// --timeout at the server's per-user rate limit, saying how to lift it.
// Within the limit the bench paces itself on the 429s' Retry-After.
func (r *run) fitsRateLimit(n int) error {
	rate := r.info.APIRate
	if rate <= 0 {
		return nil
	}
	requests := n + (n+addChunk-1)/addChunk + 8 // and a few reads
	need := time.Duration(float64(max(0, requests-r.info.APIBurst)) / rate * float64(time.Second))
	if need < r.o.Timeout*9/10 {
		return nil
	}
	return fmt.Errorf("--rekey-members %d: registering and adding %d throwaway users takes at least %s at this server's limit of %g requests a second per user (membershipd --api-rate), over --timeout %s: pass --timeout %s, or run membershipd with --api-rate 0 for the bench",
		r.o.RekeyMembers, n, need.Round(time.Second), rate, r.o.Timeout, (need*3/2).Round(time.Minute)+time.Minute)
}

// rekey registers rekeyMembers-1 throwaway users, adds them to the room,
// and times the caller's rekey and every member's fetch of the new key.
func (r *run) rekey(ctx context.Context, room string) (*RekeyResult, error) {
	ctx, cancel := context.WithTimeout(ctx, r.o.Timeout)
	defer cancel()
	n := r.o.RekeyMembers - 1
	if err := r.fitsRateLimit(n); err != nil {
		return nil, err
	}
	setup := time.Now()

	// Throwaway identities, made on every core.
	tag := randomTag()
	ids := make([]*identity.Identity, n)
	var wg sync.WaitGroup
	var genErr firstError
	workers := runtime.GOMAXPROCS(0)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				id, err := identity.Generate(fmt.Sprintf("bench-%s-%05d", tag, i), nil)
				if err != nil {
					genErr.set(err)
					return
				}
				ids[i] = id
			}
		}()
	}
	wg.Wait()
	if err := genErr.get(); err != nil {
		return nil, err
	}

	var mu sync.Mutex
	err := r.each(ctx, n, "users registered", func(ctx context.Context, i int) error {
		if _, err := r.c.AddUser(ctx, ids[i].Public().Token(), false); err != nil {
			return fmt.Errorf("register throwaway user %s: %w", ids[i].Name(), err)
		}
		mu.Lock()
		r.created = append(r.created, ids[i].UserKey())
		mu.Unlock()
		return nil
	})
	if err != nil {
		return nil, err
	}

	// Add them through the SDK, which signs what the protocol asks of an
	// add, in a few bulk requests (each carries the whole member list in
	// its statement, and a sealed key per new member).
	for lo := 0; lo < n; lo += addChunk {
		hi := min(lo+addChunk, n)
		keys := make([]string, 0, hi-lo)
		for _, id := range ids[lo:hi] {
			keys = append(keys, id.UserKey())
		}
		if _, err := r.c.AddMembers(ctx, room, keys); err != nil {
			return nil, fmt.Errorf("add %d throwaway users to the scratch room: %w", len(keys), err)
		}
		r.say("  members added: %d of %d", hi, n)
	}
	res := &RekeyResult{Members: n + 1}
	members := append([]*identity.Identity{r.id}, ids...)
	var push *keyDeliveries
	if r.info.AuthMode == "enforce" {
		res.Delivery = "api"
		res.Simulated = fmt.Sprintf("you rekey through the SDK; the %d other members are played by this process, %d at a time: each fetches its sealed key with a request signed by its own key and opens it with pkg/e2ee, instead of running %d SDK clients (on an enforcing bus this process may not read the others' key deliveries)", n, r.o.Concurrency, n)
	} else {
		res.Delivery = "nats"
		res.Simulated = fmt.Sprintf("you rekey through the SDK; the %d other members are played by this process: each takes its key delivery from NATS, applies the rekey statement to the room's verified history and opens its key, as the SDK does, on every core, instead of running %d SDK clients", n, n)
		if push, err = r.listenForKeys(ctx, room, members); err != nil {
			return nil, err
		}
		defer push.close()
	}
	res.SetupSeconds = time.Since(setup).Seconds()

	// The timed part: the SDK's Rekey (reload, seal for every member,
	// upload), then every member's fetch and open of the new key.
	waits := r.limits.waits.Load()
	t0 := time.Now()
	updated, err := r.c.Rekey(ctx, room)
	if err != nil {
		return nil, err
	}
	t1 := time.Now()
	keys := make([]e2ee.RoomKey, len(members))
	missing := make([]int, 0, len(members))
	if push != nil {
		for i, k := range push.wait(ctx, updated.Epoch) {
			if k == nil {
				missing = append(missing, i)
				continue
			}
			keys[i] = *k
			res.Delivered++
		}
	} else {
		for i := range members {
			missing = append(missing, i)
		}
	}
	err = r.each(ctx, len(missing), "members holding the new key", func(ctx context.Context, j int) error {
		i := missing[j]
		k, err := r.openKey(ctx, members[i], room, updated.Epoch)
		if err != nil {
			return fmt.Errorf("member %s: %w", members[i].Name(), err)
		}
		keys[i] = k
		return nil
	})
	if err != nil {
		return nil, err
	}
	res.Fetched = len(missing)
	t2 := time.Now()
	if n := r.limits.waits.Load() - waits; n > 0 {
		r.warn("rekey: the server's rate limit delayed %d requests of the timed part: the figure includes those waits (membershipd --api-rate 0 lifts the limit)", n)
	}
	for i, k := range keys {
		if k != keys[0] {
			return nil, fmt.Errorf("member %s opened another key than %s for epoch %d", members[i].Name(), members[0].Name(), updated.Epoch)
		}
	}
	res.Epoch = updated.Epoch
	res.SealUploadSeconds = t1.Sub(t0).Seconds()
	res.FetchSeconds = t2.Sub(t1).Seconds()
	res.Seconds = t2.Sub(t0).Seconds()
	return res, nil
}

// keyDeliveries plays the members of a rekey run taking their new keys as
// the SDK does, from membershipd's deliveries on NATS (api.KeyDelivery):
// each member applies the rekey statement to the room's verified history
// and opens its key, sealed by the statement's actor.
type keyDeliveries struct {
	nc      *nats.Conn
	msgs    chan *nats.Msg
	room    string
	state   *roomchain.State // the room's verified history before the rekey
	members map[string]int   // user key -> index in ids
	ids     []*identity.Identity
}

// deliveryIdle is how long the run waits for a delivery that does not
// come before the members still without a key fetch theirs from the API,
// as the SDK does when a room event names an epoch it does not hold.
const deliveryIdle = time.Second

// listenForKeys verifies the room's history as it is before the rekey (the
// state every member's SDK holds) and subscribes to every user's keys
// subject: the bus must let this process read them (auth off).
func (r *run) listenForKeys(ctx context.Context, room string, members []*identity.Identity) (*keyDeliveries, error) {
	var sts []roomchain.Signed
	if err := r.get(ctx, r.hc, r.id, "/v1/rooms/"+room+"/statements", url.Values{"after": {"0"}}, &sts); err != nil {
		return nil, fmt.Errorf("read the scratch room's history: %w", err)
	}
	state, err := roomchain.Verify(room, sts)
	if err != nil {
		return nil, fmt.Errorf("the scratch room's history: %w", err)
	}
	d := &keyDeliveries{msgs: make(chan *nats.Msg, len(members)+16), room: room, state: state, members: make(map[string]int, len(members)), ids: members}
	for i, id := range members {
		d.members[id.UserKey()] = i
	}
	var asyncErr firstError
	if d.nc, err = r.connectNATS("key deliveries", &asyncErr); err != nil {
		return nil, err
	}
	// Every user's keys subject (api.KeysSubject: "<inbox>.keys"); the
	// channel holds a delivery for every member.
	_, err = d.nc.ChanSubscribe("*.keys", d.msgs)
	if err == nil {
		err = d.nc.Flush()
	}
	if err != nil {
		d.nc.Close()
		return nil, fmt.Errorf("subscribe to the members' key deliveries: %w", err)
	}
	return d, nil
}

func (d *keyDeliveries) close() { d.nc.Close() }

// wait takes deliveries on every core until every member holds the key of
// epoch, or none has come for deliveryIdle. It returns each member's key,
// nil for those whose delivery did not come or did not check out.
func (d *keyDeliveries) wait(ctx context.Context, epoch uint64) []*e2ee.RoomKey {
	out := make([]*e2ee.RoomKey, len(d.ids))
	var (
		mu   sync.Mutex
		got  int
		last atomic.Int64
		wg   sync.WaitGroup
	)
	last.Store(time.Now().UnixNano())
	all := make(chan struct{})
	quit := make(chan struct{})
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-quit:
					return
				case m := <-d.msgs:
					last.Store(time.Now().UnixNano())
					i, k, ok := d.take(m, epoch)
					if !ok {
						continue
					}
					mu.Lock()
					if out[i] == nil {
						out[i] = k
						if got++; got == len(out) {
							close(all)
						}
					}
					mu.Unlock()
				}
			}
		}()
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
wait:
	for {
		select {
		case <-all:
			break wait
		case <-ctx.Done():
			break wait
		case <-tick.C:
			if time.Since(time.Unix(0, last.Load())) > deliveryIdle {
				break wait
			}
		}
	}
	close(quit)
	wg.Wait()
	return out
}

// take checks one delivery as the SDK does and opens the member's key.
func (d *keyDeliveries) take(m *nats.Msg, epoch uint64) (int, *e2ee.RoomKey, bool) {
	var kd api.KeyDelivery
	if json.Unmarshal(m.Data, &kd) != nil || kd.Room != d.room {
		return 0, nil, false
	}
	i, ok := d.members[kd.Key.Member]
	if !ok {
		return 0, nil, false
	}
	next, st, err := d.state.ApplyStatement(d.room, kd.Statement)
	if err != nil || st.Kind != roomchain.KindRekey || next.Epoch != epoch || kd.Key.Epoch != epoch || kd.Key.Sealer.User != st.Actor {
		return 0, nil, false
	}
	sealer, ok := next.MemberAt(st.Actor, epoch)
	if !ok {
		return 0, nil, false
	}
	k, err := openRoomKey(d.ids[i], d.room, epoch, sealer.XKey, kd.Key.SealedKey)
	if err != nil {
		return 0, nil, false
	}
	return i, &k, true
}

// openKey fetches id's sealed key of the room's epoch and opens it as the
// SDK does: the sealer's identity binding checked, then the seal opened.
func (r *run) openKey(ctx context.Context, id *identity.Identity, room string, epoch uint64) (e2ee.RoomKey, error) {
	var keys []api.SealedKey
	q := url.Values{"epoch": {strconv.FormatUint(epoch, 10)}}
	if err := r.get(ctx, r.hc, id, "/v1/rooms/"+room+"/keys", q, &keys); err != nil {
		return e2ee.RoomKey{}, err
	}
	if len(keys) != 1 {
		return e2ee.RoomKey{}, fmt.Errorf("the server returned %d sealed keys for epoch %d, not 1", len(keys), epoch)
	}
	k := keys[0]
	if k.Room != room || k.Member != id.UserKey() || k.Epoch != epoch {
		return e2ee.RoomKey{}, fmt.Errorf("sealed key names room %s epoch %d member %s, not what was asked", k.Room, k.Epoch, k.Member)
	}
	if err := k.Sealer.Verify(); err != nil {
		return e2ee.RoomKey{}, fmt.Errorf("sealer identity: %w", err)
	}
	return openRoomKey(id, room, epoch, k.Sealer.XKey, k.SealedKey)
}

// openRoomKey opens the room key of epoch sealed to member id by the
// holder of sealerXKey. As the SDK does, the member's own X25519 public key
// comes with its identity, not from another scalar multiplication.
func openRoomKey(id *identity.Identity, room string, epoch uint64, sealerXKey string, sealed []byte) (e2ee.RoomKey, error) {
	x, err := identity.ParseXKey(sealerXKey)
	if err != nil {
		return e2ee.RoomKey{}, err
	}
	pair, err := e2ee.XKeyPair{Private: id.XPrivate(), Public: id.XPublic()}.OpeningPairKey(x)
	if err != nil {
		return e2ee.RoomKey{}, err
	}
	return pair.Open(sealed, e2ee.SealedKeyContext{Room: room, Epoch: epoch, Recipient: [32]byte(id.SigningKey().Public().(ed25519.PublicKey))})
}
