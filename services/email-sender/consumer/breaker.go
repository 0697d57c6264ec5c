package consumer

import (
	"context"
	"sync"
	"time"
)

// breaker stops the whole consumer from sending while the provider fails
// most sends: when breakerConsecutive sends in a row fail transiently (or one
// fails for the whole account), it opens. While open, pollers receive
// nothing, workers that hold messages keep them (their heartbeat keeps them
// invisible) and wait, and one send at a time, a probe, goes out with
// growing spacing; the first success closes it. Without it every message
// would cycle through receive, fail and back off on its own, spending SES
// and SQS calls and reaching SES again in a thundering herd.
type breaker struct {
	now func() time.Time
	// Probes start probeMin apart and double up to probeMax.
	probeMin, probeMax time.Duration
	// onChange is called, outside the lock, once per state change.
	onChange func(open bool, e breakerEvent)

	mu          sync.Mutex
	open        bool
	consecutive int
	lastReason  string
	openedAt    time.Time
	nextProbe   time.Time
	spacing     time.Duration
	probing     bool
	probes      int
	waiting     int           // workers holding a message, waiting to send
	accounted   time.Time     // paused time reported up to here
	unreported  time.Duration // paused time of past openings not yet reported
	changed     chan struct{}
}

// breakerEvent describes a state change for the log.
type breakerEvent struct {
	consecutive int
	reason      string
	pausedFor   time.Duration
	probes      int
}

const (
	// breakerConsecutive transient failures in a row open the breaker.
	breakerConsecutive = 5
	// Probes start breakerProbeMin apart and double up to breakerProbeMax.
	// The maximum is short on purpose: sending resumes within it of the
	// provider's recovery, and one call per task every few seconds is no
	// load for the provider.
	breakerProbeMin = time.Second
	breakerProbeMax = 5 * time.Second
)

func newBreaker(now func() time.Time, onChange func(bool, breakerEvent)) *breaker {
	return &breaker{now: now, onChange: onChange, probeMin: breakerProbeMin, probeMax: breakerProbeMax, changed: make(chan struct{})}
}

// notify wakes everyone waiting on a change. Callers hold b.mu.
func (b *breaker) notify() {
	close(b.changed)
	b.changed = make(chan struct{})
}

// isOpen reports whether sending is paused.
func (b *breaker) isOpen() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.open
}

// record takes the outcome of one send. ok is a send the provider answered
// (accepted, or rejected for the message's own fault); severe is a failure
// of the whole account, which opens the breaker at once. probe marks the
// outcome of the probe admit handed out.
func (b *breaker) record(ok, severe, probe bool, reason string) {
	b.mu.Lock()
	now := b.now()
	var event *breakerEvent
	opened := false
	if probe {
		b.probing = false
		b.probes++
	}
	switch {
	case ok && b.open:
		event = &breakerEvent{pausedFor: now.Sub(b.openedAt), probes: b.probes}
		b.unreported += now.Sub(b.accounted)
		b.open, b.consecutive, b.probing = false, 0, false
		b.notify()
	case ok:
		b.consecutive = 0
	default:
		b.consecutive++
		b.lastReason = reason
		if b.open && probe {
			b.nextProbe = now.Add(b.spacing)
			b.spacing = min(2*b.spacing, b.probeMax)
			b.notify()
		} else if !b.open && (severe || b.consecutive >= breakerConsecutive) {
			b.open, opened = true, true
			b.openedAt, b.accounted = now, now
			b.spacing = b.probeMin
			b.nextProbe = now.Add(b.spacing)
			b.spacing = min(2*b.spacing, b.probeMax)
			b.probes = 0
			event = &breakerEvent{consecutive: b.consecutive, reason: reason}
			b.notify()
		}
	}
	b.mu.Unlock()
	if event != nil && b.onChange != nil {
		b.onChange(opened, *event)
	}
}

// abandonProbe gives back a probe admit handed out when its worker will not
// send after all (shutdown), so another can probe.
func (b *breaker) abandonProbe() {
	b.mu.Lock()
	b.probing = false
	b.notify()
	b.mu.Unlock()
}

// admit lets a worker that holds a message send: at once while closed; while
// open, when it is this worker's turn to probe (probe true), or when the
// breaker closes. It fails when ctx ends.
func (b *breaker) admit(ctx context.Context) (probe bool, err error) {
	b.mu.Lock()
	if !b.open {
		b.mu.Unlock()
		return false, nil
	}
	b.waiting++
	defer func() {
		b.mu.Lock()
		b.waiting--
		b.mu.Unlock()
	}()
	for {
		if !b.open {
			b.mu.Unlock()
			return false, nil
		}
		now := b.now()
		if !b.probing && !now.Before(b.nextProbe) {
			b.probing = true
			b.mu.Unlock()
			return true, nil
		}
		wait := b.nextProbe.Sub(now)
		if b.probing {
			wait = b.probeMax
		}
		changed := b.changed
		b.mu.Unlock()
		if err := waitChange(ctx, changed, wait); err != nil {
			return false, err
		}
		b.mu.Lock()
	}
}

// waitChange waits until changed is closed, d has passed, or ctx ends (its
// error).
func waitChange(ctx context.Context, changed <-chan struct{}, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-changed:
	case <-t.C:
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// pollLimit is how many messages a poller may receive now: -1 for no limit
// while closed. While open it waits; it returns 1 when a probe is due and no
// worker holds a message to probe with (so sending can resume even when
// every held message has gone back to the queue), or -1 once closed. tick
// runs about every second while it waits (the health check's progress: a
// deliberate pause is not a stall). It fails when ctx ends.
func (b *breaker) pollLimit(ctx context.Context, tick func()) (int, error) {
	for {
		b.mu.Lock()
		if !b.open {
			b.mu.Unlock()
			return -1, nil
		}
		now := b.now()
		if b.waiting == 0 && !b.probing && !now.Before(b.nextProbe) {
			b.mu.Unlock()
			return 1, nil
		}
		wait := min(max(b.nextProbe.Sub(now), 0), time.Second)
		if wait == 0 {
			wait = time.Second // a probe or a waiting worker has it in hand
		}
		changed := b.changed
		b.mu.Unlock()
		tick()
		if err := waitChange(ctx, changed, wait); err != nil {
			return 0, err
		}
	}
}

// takePaused returns the time spent open since it was last called (for the
// PausedTime metric).
func (b *breaker) takePaused() time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	d := b.unreported
	b.unreported = 0
	if b.open {
		now := b.now()
		d += now.Sub(b.accounted)
		b.accounted = now
	}
	return d
}

// state reports whether the breaker is open and the last failure's reason.
func (b *breaker) state() (bool, string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.open, b.lastReason
}
