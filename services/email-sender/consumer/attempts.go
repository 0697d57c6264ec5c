package consumer

import "sync"

// attempts counts, per SQS message id, how often this process has handled a
// message. SQS's ApproximateReceiveCount is the real count, but emulators
// (goaws) always report 1, and the backoff must still grow there. The map is
// bounded: past its size the oldest entry is forgotten, which at worst
// restarts one message's backoff.
type attempts struct {
	mu    sync.Mutex
	seq   uint64
	count map[string]attempt
	ring  []ringEntry
	next  int
}

type attempt struct {
	n   int
	seq uint64
}

type ringEntry struct {
	id  string
	seq uint64
}

func newAttempts(size int) *attempts {
	return &attempts{count: make(map[string]attempt, size), ring: make([]ringEntry, size)}
}

// seen records one more handling of id and returns how many there were.
func (a *attempts) seen(id string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	if at, ok := a.count[id]; ok {
		at.n++
		a.count[id] = at
		return at.n
	}
	old := a.ring[a.next]
	if cur, ok := a.count[old.id]; ok && cur.seq == old.seq {
		delete(a.count, old.id)
	}
	a.seq++
	a.ring[a.next] = ringEntry{id: id, seq: a.seq}
	a.next = (a.next + 1) % len(a.ring)
	a.count[id] = attempt{n: 1, seq: a.seq}
	return 1
}

// forget drops id once its message is done with.
func (a *attempts) forget(id string) {
	a.mu.Lock()
	delete(a.count, id)
	a.mu.Unlock()
}

func (a *attempts) len() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.count)
}
