package consumer

import (
	"context"
	"sync"
	"time"
)

// maxBatch is the most entries one SQS batch call takes.
const maxBatch = 10

// entry is one message in a batch call.
type entry struct {
	messageID, receipt string
}

// batcher gathers entries into batch calls: a batch goes out when it holds
// size entries (at most ten) or when its first entry has waited linger,
// whichever is first. Short lingers keep the window in which a crash leaves
// a sent message undeleted (and so sent twice) small. Up to forty entries'
// calls run at once (four of ten, forty of one).
type batcher struct {
	in     chan entry
	flush  func(ctx context.Context, batch []entry)
	linger time.Duration
	size   int
	sem    chan struct{}
	calls  sync.WaitGroup
	done   chan struct{}
}

func newBatcher(ctx context.Context, linger time.Duration, size int, flush func(context.Context, []entry)) *batcher {
	size = min(max(size, 1), maxBatch)
	b := &batcher{
		in:     make(chan entry, 1024),
		flush:  flush,
		linger: linger,
		size:   size,
		sem:    make(chan struct{}, 4*maxBatch/size),
		done:   make(chan struct{}),
	}
	go b.loop(ctx)
	return b
}

func (b *batcher) add(e entry) { b.in <- e }

// close flushes what is pending and waits for every call to finish.
func (b *batcher) close() {
	close(b.in)
	<-b.done
}

func (b *batcher) loop(ctx context.Context) {
	defer close(b.done)
	var batch []entry
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var expired <-chan time.Time
	send := func() {
		if len(batch) == 0 {
			return
		}
		timer.Stop()
		expired = nil
		out := batch
		batch = nil
		b.sem <- struct{}{}
		b.calls.Go(func() {
			defer func() { <-b.sem }()
			b.flush(ctx, out)
		})
	}
	for {
		select {
		case e, ok := <-b.in:
			if !ok {
				send()
				b.calls.Wait()
				return
			}
			batch = append(batch, e)
			if len(batch) == 1 {
				timer.Reset(b.linger)
				expired = timer.C
			}
			if len(batch) == b.size {
				send()
			}
		case <-expired:
			send()
		}
	}
}
