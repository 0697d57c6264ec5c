package consumer

import (
	"context"
	"sync"
)

// slots counts free workers. A poller takes slots before it asks SQS for
// messages, and asks for no more messages than it holds slots, so every
// message received starts at once instead of waiting, invisible, behind
// others.
type slots struct {
	mu      sync.Mutex
	free    int
	changed chan struct{} // closed when free grows
}

func newSlots(n int) *slots { return &slots{free: n, changed: make(chan struct{})} }

// acquire waits until at least least slots are free, then takes up to most.
func (s *slots) acquire(ctx context.Context, least, most int) (int, error) {
	for {
		s.mu.Lock()
		if s.free >= least {
			n := min(s.free, most)
			s.free -= n
			s.mu.Unlock()
			return n, nil
		}
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

func (s *slots) release(n int) {
	if n <= 0 {
		return
	}
	s.mu.Lock()
	s.free += n
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}
