package consumer

import (
	"context"
	"sync"
	"testing"
	"time"
)

// fakeClock is a settable clock for the breaker.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type breakerLog struct {
	mu     sync.Mutex
	events []bool // true: opened
}

func (l *breakerLog) record(open bool, _ breakerEvent) {
	l.mu.Lock()
	l.events = append(l.events, open)
	l.mu.Unlock()
}

func (l *breakerLog) count() (opened, closed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, o := range l.events {
		if o {
			opened++
		} else {
			closed++
		}
	}
	return opened, closed
}

func TestBreakerOpensOnConsecutiveFailuresOnly(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1000, 0)}
	log := &breakerLog{}
	b := newBreaker(clock.now, log.record)
	// Failures interrupted by successes (a few throttles among many sends)
	// never open it.
	for range 10 {
		for range breakerConsecutive - 1 {
			b.record(false, false, false, "ses status 503")
		}
		b.record(true, false, false, "")
	}
	if b.isOpen() {
		t.Fatal("opened without consecutive failures")
	}
	for range breakerConsecutive {
		b.record(false, false, false, "ses status 503")
	}
	if !b.isOpen() {
		t.Fatalf("still closed after %d failures in a row", breakerConsecutive)
	}
	// More failures of sends already on their way do not log again.
	b.record(false, false, false, "ses status 503")
	if o, c := log.count(); o != 1 || c != 0 {
		t.Errorf("logged %d openings and %d closings, want 1 and 0", o, c)
	}
}

func TestBreakerOpensAtOnceForTheAccount(t *testing.T) {
	b := newBreaker((&fakeClock{t: time.Unix(1000, 0)}).now, nil)
	b.record(false, true, false, "ses SendingPausedException")
	if !b.isOpen() {
		t.Error("an account-level failure did not open it")
	}
}

func TestBreakerProbesOneAtATimeWithGrowingSpacing(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1000, 0)}
	log := &breakerLog{}
	b := newBreaker(clock.now, log.record)
	for range breakerConsecutive {
		b.record(false, false, false, "boom")
	}
	ctx := context.Background()
	expired, cancel := context.WithCancel(ctx)
	cancel()
	// No probe before the first spacing has passed.
	if _, err := b.admit(expired); err == nil {
		t.Fatal("admitted at once while open")
	}
	var spacings []time.Duration
	for range 5 {
		waited := time.Duration(0)
		for {
			short, cancel := context.WithTimeout(ctx, time.Millisecond)
			probe, err := b.admit(short)
			cancel()
			if err == nil {
				if !probe {
					t.Fatal("admitted without a probe while open")
				}
				break
			}
			clock.advance(100 * time.Millisecond)
			waited += 100 * time.Millisecond
		}
		spacings = append(spacings, waited)
		// While the probe is out, nobody else is admitted.
		if _, err := b.admit(expired); err == nil {
			t.Fatal("a second send admitted while a probe is out")
		}
		b.record(false, false, true, "boom")
	}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second}
	for i := range want {
		if spacings[i] != want[i] {
			t.Fatalf("probe spacings %v, want %v", spacings, want)
		}
	}
	// A probe that goes through closes it, and everyone may send again.
	clock.advance(5 * time.Second)
	probe, err := b.admit(ctx)
	if err != nil || !probe {
		t.Fatal("no probe after the spacing")
	}
	b.record(true, false, true, "")
	if probe, err := b.admit(expired); err != nil || probe {
		t.Errorf("after a good probe: probe %v, err %v; want a plain admit", probe, err)
	}
	if o, c := log.count(); o != 1 || c != 1 {
		t.Errorf("logged %d openings and %d closings, want one each", o, c)
	}
}

func TestBreakerAbandonedProbeLetsAnotherProbe(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1000, 0)}
	b := newBreaker(clock.now, nil)
	b.record(false, true, false, "account")
	clock.advance(time.Second)
	if probe, err := b.admit(context.Background()); err != nil || !probe {
		t.Fatal("no probe")
	}
	b.abandonProbe()
	if probe, err := b.admit(context.Background()); err != nil || !probe {
		t.Error("the abandoned probe was not handed out again")
	}
}

func TestBreakerLetsPollersFetchAProbeWhenNobodyHoldsOne(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1000, 0)}
	b := newBreaker(clock.now, nil)
	if n, err := b.pollLimit(context.Background(), func() {}); err != nil || n != -1 {
		t.Fatalf("closed: limit %d, %v; want none", n, err)
	}
	b.record(false, true, false, "account")
	ticks := 0
	short, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := b.pollLimit(short, func() { ticks++ }); err == nil {
		t.Fatal("a poller may receive before the first probe is due")
	}
	if ticks == 0 {
		t.Error("no health progress while paused")
	}
	clock.advance(time.Second)
	if n, err := b.pollLimit(context.Background(), func() {}); err != nil || n != 1 {
		t.Errorf("probe due and no message held: limit %d, %v; want 1", n, err)
	}
}

func TestBreakerReportsPausedTime(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1000, 0)}
	b := newBreaker(clock.now, nil)
	b.record(false, true, false, "account")
	clock.advance(3 * time.Second)
	if d := b.takePaused(); d != 3*time.Second {
		t.Errorf("paused %s, want 3s", d)
	}
	clock.advance(2 * time.Second)
	b.record(true, false, false, "")
	clock.advance(time.Hour)
	if d := b.takePaused(); d != 2*time.Second {
		t.Errorf("paused %s after closing, want the last 2s and nothing after", d)
	}
}
