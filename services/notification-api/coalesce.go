package main

import (
	"context"
	"errors"
	"sync"
	"time"
)

// enqueuer puts messages on the queue. Single sends go through a coalescer
// (when the linger is above zero) that gathers concurrent ones into
// SendMessageBatch calls; batch requests are split into calls of ten.
type enqueuer struct {
	q  *queue
	co *coalescer // nil: every single send is its own SendMessage
}

func newEnqueuer(q *queue, linger, timeout time.Duration) *enqueuer {
	e := &enqueuer{q: q}
	if linger > 0 {
		e.co = newCoalescer(q, linger, timeout, time.After)
	}
	return e
}

// send queues one message and returns only once SQS confirmed it, or failed,
// or ctx ended.
func (e *enqueuer) send(ctx context.Context, m message) result {
	if e.co != nil {
		return e.co.send(ctx, m)
	}
	return e.q.sendOne(ctx, m)
}

// sendMany queues messages in SendMessageBatch calls made concurrently, and
// returns one result per message, in order.
func (e *enqueuer) sendMany(ctx context.Context, msgs []message) []result {
	results := make([]result, len(msgs))
	var wg sync.WaitGroup
	for _, c := range chunks(msgs, e.q.maxBatchBytes) {
		wg.Go(func() {
			copy(results[c[0]:c[1]], e.q.sendBatch(ctx, msgs[c[0]:c[1]]))
		})
	}
	wg.Wait()
	return results
}

// close stops taking sends, sends what was gathered and waits for the calls in
// flight. Call it after the HTTP server has drained.
func (e *enqueuer) close() {
	if e.co != nil {
		e.co.close()
	}
}

// coalescer gathers single sends that arrive together into one
// SendMessageBatch: a batch leaves when it holds ten messages, when the next
// message would overflow the batch payload limit, or linger after its first
// message arrived, whichever comes first. A lone message therefore waits at
// most linger. Each caller gets the result of its own entry.
type coalescer struct {
	q       *queue
	linger  time.Duration
	timeout time.Duration // for the SQS call when callers set no deadline
	after   func(time.Duration) <-chan time.Time

	mu     sync.RWMutex // guards closed against sends on the closed channel
	closed bool
	in     chan *pendingSend

	loopDone chan struct{}
	calls    sync.WaitGroup
}

type pendingSend struct {
	ctx  context.Context
	msg  message
	done chan result // buffered: a caller that gave up never blocks the batch
}

var errClosed = errors.New("the service is shutting down")

func newCoalescer(q *queue, linger, timeout time.Duration, after func(time.Duration) <-chan time.Time) *coalescer {
	c := &coalescer{
		q: q, linger: linger, timeout: timeout, after: after,
		in:       make(chan *pendingSend, 4*sqsMaxBatch),
		loopDone: make(chan struct{}),
	}
	go c.loop()
	return c
}

func (c *coalescer) send(ctx context.Context, m message) result {
	p := &pendingSend{ctx: ctx, msg: m, done: make(chan result, 1)}
	c.mu.RLock()
	if c.closed {
		c.mu.RUnlock()
		return result{err: errUnavailable(errClosed)}
	}
	select {
	case c.in <- p:
	case <-ctx.Done():
		c.mu.RUnlock()
		return result{err: classify(ctx.Err())}
	}
	c.mu.RUnlock()
	select {
	case r := <-p.done:
		return r
	case <-ctx.Done():
		// The entry may still reach the queue: at-least-once, never a
		// 202 for a message that is not there.
		return result{err: classify(ctx.Err())}
	}
}

func (c *coalescer) close() {
	c.mu.Lock()
	if !c.closed {
		c.closed = true
		close(c.in)
	}
	c.mu.Unlock()
	<-c.loopDone
	c.calls.Wait()
}

func (c *coalescer) loop() {
	defer close(c.loopDone)
	var (
		batch []*pendingSend
		size  int
		timer <-chan time.Time
	)
	flush := func() {
		if len(batch) > 0 {
			b := batch
			c.calls.Go(func() { c.sendBatch(b) })
		}
		batch, size, timer = nil, 0, nil
	}
	for {
		select {
		case p, ok := <-c.in:
			if !ok {
				flush()
				return
			}
			if len(batch) > 0 && size+len(p.msg.body) > c.q.maxBatchBytes {
				flush()
			}
			batch = append(batch, p)
			size += len(p.msg.body)
			if len(batch) == 1 {
				timer = c.after(c.linger)
			}
			if len(batch) == sqsMaxBatch {
				flush()
			}
		case <-timer:
			flush()
		}
	}
}

// sendBatch makes one SendMessageBatch for the callers still waiting, under
// the earliest of their deadlines, and answers each with its own entry.
func (c *coalescer) sendBatch(batch []*pendingSend) {
	live := batch[:0:0]
	var deadline time.Time
	for _, p := range batch {
		if p.ctx.Err() != nil {
			continue // its caller has already been answered
		}
		live = append(live, p)
		if d, ok := p.ctx.Deadline(); ok && (deadline.IsZero() || d.Before(deadline)) {
			deadline = d
		}
	}
	if len(live) == 0 {
		return
	}
	if deadline.IsZero() {
		deadline = time.Now().Add(c.timeout)
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	msgs := make([]message, len(live))
	for i, p := range live {
		msgs[i] = p.msg
	}
	for i, r := range c.q.sendBatch(ctx, msgs) {
		live[i].done <- r
	}
}
