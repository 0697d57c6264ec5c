// Package batch gathers items that arrive one by one into batches, one call
// each: the API's SendMessageBatch of concurrent posts, the sender's
// DeleteMessageBatch and ChangeMessageVisibilityBatch. One mechanism for
// both, as gocloud's batcher serves both its SQS sends and acks.
package batch

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// ErrClosed is Add's error once Close has begun.
var ErrClosed = errors.New("batch: closed")

// Config shapes a Batcher. Every field but Weight, MaxWeight and After is
// required: there are no defaults here.
type Config[T any] struct {
	// Size is the most items of one batch.
	Size int
	// Linger is the longest the first item of a batch waits for others. A
	// batch leaves when it holds Size items, when the next item would take
	// it over MaxWeight, or Linger after its first item, whichever is first.
	Linger time.Duration
	// Weight and MaxWeight bound what a batch carries (bytes of bodies);
	// MaxWeight 0 sets no bound. An item heavier than MaxWeight still
	// leaves, alone.
	Weight    func(T) int
	MaxWeight int
	// MaxCalls is the most Flush calls at once; the next batch waits for
	// one to end (and Add, when the queue of items is full too).
	MaxCalls int
	// Queue is how many items Add hands over without waiting for the loop.
	Queue int
	// Flush makes the call for one batch, in a goroutine other than Add's
	// and the loop's (a worker, see workerIdle).
	Flush func(batch []T)
	// After is time.After, or a fake clock in tests.
	After func(time.Duration) <-chan time.Time
}

// Batcher gathers items and flushes them in batches. Make it with New; Add
// from any goroutine; Close once.
type Batcher[T any] struct {
	cfg Config[T]
	in  chan T

	mu     sync.RWMutex // guards closed against an Add on the closed channel
	closed bool

	sem   chan struct{}
	work  chan []T // to an idle worker
	calls sync.WaitGroup
	done  chan struct{}
}

// workerIdle is how long a worker waits for its next batch before it
// ends. A worker makes call after call while they keep coming: a new
// goroutine per batch would grow its stack afresh through the SDK's deep
// call chain each time (runtime.copystack was 5% of the API's CPU per keyed
// notification), and an idle one costs its stack only.
const workerIdle = time.Second

// New starts a batcher.
func New[T any](cfg Config[T]) (*Batcher[T], error) {
	switch {
	case cfg.Size < 1 || cfg.MaxCalls < 1 || cfg.Queue < 1:
		return nil, fmt.Errorf("batch: size %d, calls %d and queue %d must be at least 1", cfg.Size, cfg.MaxCalls, cfg.Queue)
	case cfg.Linger <= 0:
		return nil, fmt.Errorf("batch: linger %s must be above zero", cfg.Linger)
	case cfg.Flush == nil:
		return nil, errors.New("batch: Flush is required")
	case cfg.MaxWeight < 0 || (cfg.MaxWeight > 0) != (cfg.Weight != nil):
		return nil, errors.New("batch: Weight and MaxWeight go together")
	}
	if cfg.After == nil {
		cfg.After = time.After
	}
	b := &Batcher[T]{
		cfg:  cfg,
		in:   make(chan T, cfg.Queue),
		sem:  make(chan struct{}, cfg.MaxCalls),
		work: make(chan []T),
		done: make(chan struct{}),
	}
	go b.loop()
	return b, nil
}

// Add hands one item over, waiting while the queue is full. It fails with
// ErrClosed once Close has begun, or with ctx's error when ctx ends first.
func (b *Batcher[T]) Add(ctx context.Context, item T) error {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return ErrClosed
	}
	select {
	case b.in <- item:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close stops taking items, flushes what was gathered and waits for every
// call to end.
func (b *Batcher[T]) Close() {
	b.mu.Lock()
	if !b.closed {
		b.closed = true
		close(b.in)
	}
	b.mu.Unlock()
	<-b.done
}

func (b *Batcher[T]) loop() {
	defer close(b.done)
	var (
		batch  []T
		weight int
		timer  <-chan time.Time
	)
	flush := func() {
		if len(batch) > 0 {
			out := batch
			b.sem <- struct{}{} // released by the worker when Flush returns
			select {
			case b.work <- out:
			default: // no worker is idle
				b.calls.Go(func() { b.worker(out) })
			}
		}
		batch, weight, timer = nil, 0, nil
	}
	for {
		select {
		case item, ok := <-b.in:
			if !ok {
				flush()
				close(b.work)
				b.calls.Wait()
				return
			}
			w := 0
			if b.cfg.Weight != nil {
				w = b.cfg.Weight(item)
			}
			if len(batch) > 0 && b.cfg.MaxWeight > 0 && weight+w > b.cfg.MaxWeight {
				flush()
			}
			batch = append(batch, item)
			weight += w
			if len(batch) == 1 {
				timer = b.cfg.After(b.cfg.Linger)
			}
			if len(batch) == b.cfg.Size {
				flush()
			}
		case <-timer:
			flush()
		}
	}
}

// worker flushes first, then the batches the loop hands it, until it has
// waited workerIdle for one or the loop has ended. It holds a slot of sem
// only while it flushes, so MaxCalls bounds the calls at once. A worker is
// started only when none is waiting for a batch, so there are about as
// many as calls at once (one that has just flushed may not be waiting yet),
// and the spare ones end after workerIdle.
func (b *Batcher[T]) worker(first []T) {
	b.cfg.Flush(first)
	<-b.sem
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		select {
		case out, ok := <-b.work:
			if !ok {
				return
			}
			b.cfg.Flush(out)
			<-b.sem
			idle.Reset(workerIdle)
		case <-idle.C:
			return
		}
	}
}
