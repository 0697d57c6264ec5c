package batch

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// recorder keeps the batches flushed, in order of flushing.
type recorder struct {
	mu      sync.Mutex
	batches [][]int
	flushed chan []int
}

func newRecorder() *recorder { return &recorder{flushed: make(chan []int, 100)} }

func (r *recorder) flush(b []int) {
	r.mu.Lock()
	r.batches = append(r.batches, b)
	r.mu.Unlock()
	r.flushed <- b
}

// fakeClock fires a linger only when told.
type fakeClock struct {
	mu    sync.Mutex
	fires []chan time.Time
}

func (c *fakeClock) after(time.Duration) <-chan time.Time {
	ch := make(chan time.Time, 1)
	c.mu.Lock()
	c.fires = append(c.fires, ch)
	c.mu.Unlock()
	return ch
}

// fire ends the latest linger.
func (c *fakeClock) fire() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fires[len(c.fires)-1] <- time.Now()
}

func (c *fakeClock) started() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.fires)
}

func mustNew(t *testing.T, cfg Config[int]) *Batcher[int] {
	t.Helper()
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func add(t *testing.T, b *Batcher[int], items ...int) {
	t.Helper()
	for _, i := range items {
		if err := b.Add(context.Background(), i); err != nil {
			t.Fatal(err)
		}
	}
}

func TestBatchLeavesFullOnLingerOrHeavy(t *testing.T) {
	r := newRecorder()
	clock := &fakeClock{}
	b := mustNew(t, Config[int]{Size: 3, Linger: time.Hour, MaxCalls: 1, Queue: 16, Flush: r.flush, After: clock.after,
		Weight: func(i int) int { return i }, MaxWeight: 10})
	defer b.Close()

	// Full: three items leave at once, no linger fired.
	add(t, b, 1, 2, 3)
	if got := <-r.flushed; !slices.Equal(got, []int{1, 2, 3}) {
		t.Fatalf("full batch %v", got)
	}
	// A lone item waits for its linger.
	add(t, b, 4)
	for clock.started() < 2 {
		time.Sleep(time.Millisecond) // polling the fake clock, the flush is what is waited for
	}
	select {
	case got := <-r.flushed:
		t.Fatalf("%v flushed before its linger", got)
	default:
	}
	clock.fire()
	if got := <-r.flushed; !slices.Equal(got, []int{4}) {
		t.Fatalf("lingered batch %v", got)
	}
	// The next item would take the batch over MaxWeight: the batch leaves
	// without it, and it starts the next.
	add(t, b, 5, 6)
	if got := <-r.flushed; !slices.Equal(got, []int{5}) {
		t.Fatalf("heavy batch %v, want [5] alone", got)
	}
	b.Close()
	if got := <-r.flushed; !slices.Equal(got, []int{6}) {
		t.Fatalf("close flushed %v, want [6]", got)
	}
}

func TestCloseFlushesAndWaitsAndRefuses(t *testing.T) {
	release := make(chan struct{})
	var finished atomic.Int32
	b := mustNew(t, Config[int]{Size: 10, Linger: time.Hour, MaxCalls: 2, Queue: 4, Flush: func([]int) {
		<-release
		finished.Add(1)
	}})
	add(t, b, 1, 2)
	closed := make(chan struct{})
	go func() {
		b.Close()
		close(closed)
	}()
	select {
	case <-closed:
		t.Fatal("Close returned with a call in flight")
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	<-closed
	if finished.Load() != 1 {
		t.Errorf("%d calls finished, want the one batch", finished.Load())
	}
	if err := b.Add(context.Background(), 3); !errors.Is(err, ErrClosed) {
		t.Errorf("Add after Close: %v, want ErrClosed", err)
	}
	b.Close() // a second Close is harmless
}

// MaxCalls bounds the calls at once; with the queue full too, Add waits,
// and gives up when its context ends.
func TestMaxCallsAndBackpressure(t *testing.T) {
	release := make(chan struct{})
	var inFlight, most atomic.Int32
	b := mustNew(t, Config[int]{Size: 1, Linger: time.Hour, MaxCalls: 2, Queue: 1, Flush: func([]int) {
		n := inFlight.Add(1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		<-release
		inFlight.Add(-1)
	}})
	// Two calls run, the loop holds the third batch, one waits in the queue.
	add(t, b, 1, 2, 3, 4)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := b.Add(ctx, 5); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Add with everything full: %v, want the context's error", err)
	}
	close(release)
	b.Close()
	if most.Load() != 2 {
		t.Errorf("%d calls at once, want MaxCalls 2", most.Load())
	}
}

func TestConfigRefusesZeros(t *testing.T) {
	ok := Config[int]{Size: 1, Linger: time.Millisecond, MaxCalls: 1, Queue: 1, Flush: func([]int) {}}
	for name, change := range map[string]func(*Config[int]){
		"size":       func(c *Config[int]) { c.Size = 0 },
		"linger":     func(c *Config[int]) { c.Linger = 0 },
		"calls":      func(c *Config[int]) { c.MaxCalls = 0 },
		"queue":      func(c *Config[int]) { c.Queue = 0 },
		"flush":      func(c *Config[int]) { c.Flush = nil },
		"max weight": func(c *Config[int]) { c.MaxWeight = 10 },
	} {
		cfg := ok
		change(&cfg)
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	b, err := New(ok)
	if err != nil {
		t.Fatal(err)
	}
	b.Close()
}
