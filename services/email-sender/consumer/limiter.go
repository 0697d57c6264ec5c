package consumer

import (
	"context"
	"fmt"
	"math"
	"sync"
	"time"
)

// AIMD paces one process's sends under the SES account's send quota, which
// every sender task shares. It starts at a seed (the quota divided by the
// expected number of tasks), cuts its rate by a factor on a throttle
// (multiplicative decrease) and raises it slowly while sends succeed at full
// pace (additive increase), never above the quota and never below a floor.
//
// Sends are paced strictly, one at a time: a waiter takes the next slot
// 1/rate after the previous one, so one task alone at the quota never sends
// faster than SES allows.
//
// Two choices keep throttling rare with many tasks (tests: limiter_test.go,
// a simulation of tasks sharing one quota):
//   - One decrease per congestion event: a throttle only cuts the rate if
//     its send was admitted after the last cut; the sends already on their
//     way when SES pushed back carry no new information.
//   - The increase per second grows with the square of the task's rate
//     (Step * rate^2 / quota): at a fair share q/N it is Step*q/N^2, so the
//     tasks together speed up by Step*q/N whatever N is. A fixed increase
//     per task would add up to N times that and throttle N times as often,
//     and N is only a seed: autoscaling changes it.
type AIMD struct {
	cfg  AIMDConfig
	turn chan struct{} // one waiter at a time takes the next slot

	mu           sync.Mutex
	now          func() time.Time
	rate         float64
	next         time.Time // earliest start of the next send
	lastDecrease time.Time
	saturated    bool // the last admission had to wait: the rate is what limits
}

// AIMDConfig shapes an AIMD limiter.
type AIMDConfig struct {
	// Quota is the account's maximum sends per second, for all tasks
	// together: the rate never goes above it.
	Quota float64
	// Tasks is how many sender tasks are expected to share the quota; the
	// rate starts at Quota/Tasks.
	Tasks int
}

const (
	// aimdDecrease is the factor a throttle cuts the rate by. Not a half:
	// with a strict pacer, one throttle means the tasks together were just
	// over the quota, not twice over it.
	aimdDecrease = 0.7
	// aimdStep tunes the additive increase (see AIMD).
	aimdStep = 0.1
	// aimdFloor is the lowest rate as a fraction of the quota: a task pushed
	// down to it recovers within seconds once throttling stops.
	aimdFloor = 0.02
)

// NewAIMD makes a limiter at the seed Quota/Tasks.
func NewAIMD(cfg AIMDConfig) (*AIMD, error) {
	if !(cfg.Quota > 0) || math.IsInf(cfg.Quota, 0) {
		return nil, fmt.Errorf("consumer: send quota %g must be a positive number", cfg.Quota)
	}
	if cfg.Tasks < 1 {
		return nil, fmt.Errorf("consumer: sender tasks %d must be at least 1", cfg.Tasks)
	}
	return &AIMD{cfg: cfg, turn: make(chan struct{}, 1), now: time.Now, rate: cfg.Quota / float64(cfg.Tasks)}, nil
}

// Rate is the current sends per second.
func (l *AIMD) Rate() float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rate
}

func (l *AIMD) floor() float64 { return l.cfg.Quota * aimdFloor }

func (l *AIMD) interval() time.Duration { return time.Duration(float64(time.Second) / l.rate) }

// Wait blocks until the caller may send, or ctx ends.
func (l *AIMD) Wait(ctx context.Context) error {
	// Fast path: nobody is waiting and the slot is due (at a high quota,
	// almost always): no hand-over between goroutines.
	l.mu.Lock()
	if len(l.turn) == 0 && l.admit(l.now(), false) == 0 {
		l.mu.Unlock()
		return nil
	}
	l.mu.Unlock()
	select {
	case l.turn <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-l.turn }()
	waited := false
	for {
		l.mu.Lock()
		wait := l.admit(l.now(), waited)
		l.mu.Unlock()
		if wait <= 0 {
			return nil
		}
		waited = true
		// The slot is read again after the wait: a throttle meanwhile may
		// have moved it.
		if !sleep(ctx, wait) {
			return ctx.Err()
		}
	}
}

// pacerSlack: a slot due within it is taken at once. Sleeping for less
// costs more than it paces (at a high quota the slots are microseconds
// apart), and the pace stays exact on average: slots follow each other
// from where the last one was, not from when it was taken.
const pacerSlack = time.Millisecond

// admit takes the slot at now if it is due and returns 0, or returns how
// long until it is. Callers hold l.mu.
func (l *AIMD) admit(now time.Time, waited bool) time.Duration {
	wait := l.next.Sub(now)
	if wait > pacerSlack {
		return wait
	}
	if wait > 0 {
		waited = true // at the rate's limit all the same
	}
	iv := l.interval()
	if now.Sub(l.next) >= iv {
		// Idle: no credit for the time nobody sent.
		l.next = now.Add(iv)
	} else {
		// A little late (timer slop): keep the average pace.
		l.next = l.next.Add(iv)
	}
	l.saturated = waited
	return 0
}

// Throttled reports that a send admitted at admitted was throttled.
func (l *AIMD) Throttled(admitted time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.throttled(admitted, l.now())
}

func (l *AIMD) throttled(admitted, now time.Time) {
	if admitted.Before(l.lastDecrease) {
		return // already slowed down for this congestion
	}
	l.rate = max(l.floor(), l.rate*aimdDecrease)
	l.lastDecrease = now
	if next := now.Add(l.interval()); next.After(l.next) {
		l.next = next
	}
}

// Succeeded reports that a send admitted at admitted went through.
func (l *AIMD) Succeeded(admitted time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.succeeded()
}

func (l *AIMD) succeeded() {
	if !l.saturated {
		// Sending below the rate says nothing about whether a higher one
		// would pass; growing it meanwhile would only store up a burst.
		return
	}
	// Step*rate^2/quota per second, spread over the rate's sends.
	l.rate = min(l.cfg.Quota, l.rate+aimdStep*l.rate/l.cfg.Quota)
}
