package main

import (
	"context"
	"errors"
	"time"

	"herald/services/internal/batch"
)

// Callers that share one call (package batch): the SQS coalescer's
// SendMessageBatch, the keyed writes' TransactWriteItems and BatchWriteItem.
// Each caller hands its request over and waits for its own result; the
// call is made for the callers still waiting.

// pending is one caller's request A waiting for its result R.
type pending[A, R any] struct {
	ctx  context.Context
	arg  A
	done chan R // buffered: a caller that gave up never blocks the call
}

// await hands arg to b and waits for its result, or for ctx. notTaken is
// the result when b did not take the request (nothing was done): errClosed
// when b no longer takes requests (a 503, and the client retries on
// another task), or Add's error. gaveUp is the result when ctx ended while
// the call may still be under way.
func await[A, R any](ctx context.Context, b *batch.Batcher[*pending[A, R]], arg A, notTaken, gaveUp func(error) R) R {
	p := &pending[A, R]{ctx: ctx, arg: arg, done: make(chan R, 1)}
	if err := b.Add(ctx, p); errors.Is(err, batch.ErrClosed) {
		return notTaken(errClosed)
	} else if err != nil {
		return notTaken(err)
	}
	select {
	case r := <-p.done:
		return r
	case <-ctx.Done():
		return gaveUp(ctx.Err())
	}
}

// callLive makes one call for the callers of batch still waiting, under the
// earliest of their deadlines (timeout from now when none has one), and
// hands each its own result.
func callLive[A, R any](batch []*pending[A, R], timeout time.Duration, call func(context.Context, []A) []R) {
	var live []*pending[A, R]
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
		deadline = time.Now().Add(timeout)
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	args := make([]A, len(live))
	for i, p := range live {
		args[i] = p.arg
	}
	for i, r := range call(ctx, args) {
		live[i].done <- r
	}
}
