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
	b       *batch.Batcher[*pending[message, result]]
}

var errClosed = errors.New("the service is shutting down")

// newCoalescer gathers sends for q. At most maxCalls batches are sent at
// once: the connection cap, as each batch holds at least one request.
func newCoalescer(q *queue, linger, timeout time.Duration, maxCalls int, after func(time.Duration) <-chan time.Time) (*coalescer, error) {
	c := &coalescer{q: q, timeout: timeout}
	b, err := batch.New(batch.Config[*pending[message, result]]{
		Size:      sqsMaxBatch,
		Linger:    linger,
		Weight:    func(p *pending[message, result]) int { return len(p.arg.body) },
		MaxWeight: q.maxBatchBytes,
		MaxCalls:  maxCalls,
		Queue:     4 * sqsMaxBatch,
		Flush:     func(b []*pending[message, result]) { callLive(b, c.timeout, c.q.sendBatch) },
		After:     after,
	})
	if err != nil {
		return nil, err
	}
	c.b = b
	return c, nil
}

func (c *coalescer) send(ctx context.Context, m message) result {
	return await(ctx, c.b, m,
		// Not taken into a batch: nothing was sent.
		func(err error) result { return result{err: errUnavailable(err)} },
		// The entry may still reach the queue: at-least-once, never a 202
		// for a message that is not there.
		func(err error) result { return result{err: classify(err)} })
}

// close sends what was gathered and waits for the calls in flight.
func (c *coalescer) close() { c.b.Close() }
