package main

import (
	"context"
	"errors"
	"sync"
	"time"

	"herald/services/internal/batch"
)

// enqueuer puts messages on the queue. Single sends go through a coalescer
// (when the linger is above zero) that gathers concurrent ones into
// SendMessageBatch calls; batch requests are split into calls of ten.
type enqueuer struct {
	q  *queue
	co *coalescer // nil: every single send is its own SendMessage
}

func newEnqueuer(q *queue, linger, timeout time.Duration, maxCalls int) (*enqueuer, error) {
	e := &enqueuer{q: q}
	if linger > 0 {
		co, err := newCoalescer(q, linger, timeout, maxCalls, time.After)
		if err != nil {
			return nil, err
		}
		e.co = co
	}
	return e, nil
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
// SendMessageBatch (package batch): a batch leaves when it holds ten
// messages, when the next message would overflow the batch payload limit,
// or linger after its first message arrived, whichever comes first. A lone
// message therefore waits at most linger. Each caller gets the result of
// its own entry.
type coalescer struct {
	q       *queue
	timeout time.Duration // for the SQS call when callers set no deadline
	b       *batch.Batcher[*pendingSend]
}

type pendingSend struct {
	ctx  context.Context
	msg  message
	done chan result // buffered: a caller that gave up never blocks the batch
}

var errClosed = errors.New("the service is shutting down")

// newCoalescer gathers sends for q. At most maxCalls batches are sent at
// once: the connection cap, as each batch holds at least one request.
func newCoalescer(q *queue, linger, timeout time.Duration, maxCalls int, after func(time.Duration) <-chan time.Time) (*coalescer, error) {
	c := &coalescer{q: q, timeout: timeout}
	b, err := batch.New(batch.Config[*pendingSend]{
		Size:      sqsMaxBatch,
		Linger:    linger,
		Weight:    func(p *pendingSend) int { return len(p.msg.body) },
		MaxWeight: q.maxBatchBytes,
		MaxCalls:  maxCalls,
		Queue:     4 * sqsMaxBatch,
		Flush:     c.sendBatch,
		After:     after,
	})
	if err != nil {
		return nil, err
	}
	c.b = b
	return c, nil
}

func (c *coalescer) send(ctx context.Context, m message) result {
	p := &pendingSend{ctx: ctx, msg: m, done: make(chan result, 1)}
	if err := c.b.Add(ctx, p); errors.Is(err, batch.ErrClosed) {
		return result{err: errUnavailable(errClosed)}
	} else if err != nil {
		// Not taken into a batch: nothing was sent.
		return result{err: errUnavailable(err)}
	}
	select {
	case r := <-p.done:
		return r
	case <-ctx.Done():
		// The entry may still reach the queue: at-least-once, never a
		// 202 for a message that is not there.
		return result{err: classify(ctx.Err())}
	}
}

// close sends what was gathered and waits for the calls in flight.
func (c *coalescer) close() { c.b.Close() }

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
