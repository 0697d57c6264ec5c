package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"herald/services/internal/store"
)

// fakeState records the store calls of the keyWriter and answers each
// request by its key: Started with id "id-<key>"; a Complete of key "bad"
// fails.
type fakeState struct {
	mu        sync.Mutex
	begins    [][]store.BeginRequest
	completes [][]store.Completion
}

func (f *fakeState) BeginMany(ctx context.Context, lease time.Duration, reqs []store.BeginRequest) []store.BeginResult {
	f.mu.Lock()
	f.begins = append(f.begins, reqs)
	f.mu.Unlock()
	res := make([]store.BeginResult, len(reqs))
	for i, r := range reqs {
		res[i].Outcome, res[i].ID = store.Started, "id-"+r.Key
		res[i].Lease = store.KeyLease{Scope: r.Scope, Key: r.Key, Token: "t"}
	}
	return res
}

func (f *fakeState) CompleteMany(ctx context.Context, cs []store.Completion) []error {
	f.mu.Lock()
	f.completes = append(f.completes, cs)
	f.mu.Unlock()
	errs := make([]error, len(cs))
	for i, c := range cs {
		if c.Lease.Key == "bad" {
			errs[i] = errors.New("unprocessed")
		}
	}
	return errs
}

func (f *fakeState) Release(context.Context, store.KeyLease) error { return errors.New("unused") }
func (f *fakeState) Abandon(context.Context, store.KeyLease) error { return errors.New("unused") }
func (f *fakeState) Get(context.Context, string, string) (store.Status, error) {
	return store.Status{}, errors.New("unused")
}

func (f *fakeState) sizes() (begins, completes []int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, b := range f.begins {
		begins = append(begins, len(b))
	}
	for _, c := range f.completes {
		completes = append(completes, len(c))
	}
	return begins, completes
}

// never is a linger that never ends: a call leaves only when it is full.
func never(time.Duration) <-chan time.Time { return nil }

func TestKeyWriterSharesCalls(t *testing.T) {
	// Given 100 concurrent Begins and 50 Completes, and a linger that
	// never ends, then the Begins are one call of 100 and the Completes two
	// of 25, and each caller gets its own request's result.
	f := &fakeState{}
	w, err := newKeyWriter(f, time.Millisecond, 4, never)
	if err != nil {
		t.Fatal(err)
	}
	defer w.close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for i := range store.MaxTransactItems {
		wg.Go(func() {
			key := fmt.Sprint("k", i)
			if r := w.begin(ctx, store.BeginRequest{Scope: "test", Key: key}); r.Err != nil || r.ID != "id-"+key {
				t.Errorf("begin %s: %+v", key, r)
			}
		})
	}
	wg.Wait()
	errs := make([]error, 2*store.MaxBatchWrite)
	for i := range errs {
		wg.Go(func() {
			key := fmt.Sprint("k", i)
			if i == 7 {
				key = "bad"
			}
			errs[i] = w.complete(ctx, store.Completion{Lease: store.KeyLease{Scope: "test", Key: key, Token: "t"}})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if (err != nil) != (i == 7) {
			t.Errorf("complete %d: %v", i, err)
		}
	}
	begins, completes := f.sizes()
	if fmt.Sprint(begins, completes) != "[100] [25 25]" {
		t.Errorf("calls of %v begins and %v completes, want [100] and [25 25]", begins, completes)
	}
}

func TestKeyWriterEdges(t *testing.T) {
	t.Run("a lone request leaves after the linger", func(t *testing.T) {
		f := &fakeState{}
		w, _ := newKeyWriter(f, time.Millisecond, 4, time.After)
		defer w.close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if r := w.begin(ctx, store.BeginRequest{Scope: "test", Key: "alone"}); r.Err != nil || r.ID != "id-alone" {
			t.Fatalf("%+v", r)
		}
		if b, _ := f.sizes(); fmt.Sprint(b) != "[1]" {
			t.Errorf("calls %v", b)
		}
	})
	t.Run("a caller that gave up is left out", func(t *testing.T) {
		f := &fakeState{}
		w, _ := newKeyWriter(f, time.Millisecond, 4, time.After)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if r := w.begin(ctx, store.BeginRequest{Scope: "test", Key: "gone"}); !errors.Is(r.Err, context.Canceled) {
			t.Fatalf("%+v, want canceled", r)
		}
		w.close() // flushes what was gathered
		if b, _ := f.sizes(); len(b) != 0 {
			t.Errorf("calls %v for a caller that gave up", b)
		}
	})
	t.Run("closed", func(t *testing.T) {
		f := &fakeState{}
		w, _ := newKeyWriter(f, time.Millisecond, 4, time.After)
		w.close()
		if r := w.begin(context.Background(), store.BeginRequest{Scope: "test", Key: "late"}); !errors.Is(r.Err, errClosed) {
			t.Errorf("begin after close: %v", r.Err)
		}
		if err := w.complete(context.Background(), store.Completion{}); !errors.Is(err, errClosed) {
			t.Errorf("complete after close: %v", err)
		}
	})
	t.Run("linger 0: each request its own call", func(t *testing.T) {
		f := &fakeState{}
		w, _ := newKeyWriter(f, 0, 4, never)
		defer w.close()
		for i := range 3 {
			w.begin(context.Background(), store.BeginRequest{Scope: "test", Key: fmt.Sprint(i)})
		}
		w.complete(context.Background(), store.Completion{})
		if b, c := f.sizes(); fmt.Sprint(b, c) != "[1 1 1] [1]" {
			t.Errorf("calls %v %v", b, c)
		}
	})
	t.Run("no store", func(t *testing.T) {
		if w, err := newKeyWriter(nil, time.Millisecond, 4, never); w != nil || err != nil {
			t.Errorf("%v %v", w, err)
		}
	})
}
