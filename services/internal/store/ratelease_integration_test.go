package store_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"herald/services/devstack/dynamolocal"
	"herald/services/internal/store"
)

// TestRateLeasesOnDynalite: tasks leasing one key's tokens at once, each
// from its own view of the bucket, are granted together exactly what the
// bucket holds: the burst, then the rate times the time that passed.
func TestRateLeasesOnDynalite(t *testing.T) {
	emu, table := newTable(t)
	c := newClock()
	r, err := store.NewRateBuckets(emu.Client(), table, c.Now)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	b := store.Bucket{Rate: 40, Burst: 100}
	const tasks = 6

	// drain has each task lease 1 to 7 tokens until the bucket has none for
	// it, and returns the tokens granted to all.
	states := make([]store.BucketState, tasks)
	drain := func() (granted, requests int) {
		var mu sync.Mutex
		var wg sync.WaitGroup
		for i := range tasks {
			wg.Go(func() {
				for n := 0; n < 1000; n++ { // bounded: the bucket empties long before
					g, err := r.Lease(ctx, "svc", b, 1+(i+n)%7, 1, states[i])
					if errors.Is(err, store.ErrContended) {
						states[i] = g.State
						mu.Lock()
						requests += g.Requests
						mu.Unlock()
						continue
					}
					if err != nil {
						t.Error(err)
						return
					}
					states[i] = g.State
					mu.Lock()
					granted += g.Tokens
					requests += g.Requests
					mu.Unlock()
					if g.Tokens == 0 {
						return
					}
				}
				t.Error("the bucket never ran out")
			})
		}
		wg.Wait()
		return granted, requests
	}

	before := emu.Stats()
	if granted, requests := drain(); granted != b.Burst {
		t.Fatalf("granted %d from a full bucket, want the burst %d", granted, b.Burst)
	} else if got := emu.Stats().Sub(before).Operations["UpdateItem"].Requests; got != int64(requests) {
		t.Errorf("the emulator saw %d UpdateItem, the leases report %d", got, requests)
	}
	// 2.5 s at 40/s: 100 tokens, all of them to the tasks together.
	c.Advance(2500 * time.Millisecond)
	if granted, _ := drain(); granted != 100 {
		t.Fatalf("granted %d after 2.5 s at 40/s, want 100", granted)
	}
	// 0.3 s: 12 tokens; the burst caps nothing here.
	c.Advance(300 * time.Millisecond)
	if granted, _ := drain(); granted != 12 {
		t.Fatalf("granted %d after 0.3 s at 40/s, want 12", granted)
	}
	// A bucket left alone refills to the burst, no more.
	c.Advance(time.Hour)
	if granted, _ := drain(); granted != b.Burst {
		t.Fatalf("granted %d after an hour, want the burst %d", granted, b.Burst)
	}
}

// TestRateLeaseWhenTheTableFails: throttling and a hung table are errors
// the caller tells apart (Unavailable), and a lease after the fault works.
func TestRateLeaseWhenTheTableFails(t *testing.T) {
	emu, table := newTable(t)
	r, err := store.NewRateBuckets(emu.Client(), table, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	b := store.Bucket{Rate: 10, Burst: 10}
	for _, mode := range []dynamolocal.FaultMode{dynamolocal.FaultThrottle, dynamolocal.FaultHang} {
		if err := emu.SetFault(mode, time.Minute); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := r.Lease(ctx, "svc", b, 1, 1, store.BucketState{})
		cancel()
		if !store.Unavailable(err) {
			t.Errorf("%s: %v, want Unavailable", mode, err)
		}
		if err := emu.SetFault(mode, 0); err != nil {
			t.Fatal(err)
		}
	}
	g, err := r.Lease(context.Background(), "svc", b, 3, 1, store.BucketState{})
	if err != nil || g.Tokens != 3 {
		t.Fatalf("after the faults: %+v, %v", g, err)
	}
}
