package consumer

import (
	"container/heap"
	"context"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

func newTestAIMD(t *testing.T, quota float64, tasks int) *AIMD {
	t.Helper()
	l, err := NewAIMD(AIMDConfig{Quota: quota, Tasks: tasks})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestAIMDRefusesBadSettings(t *testing.T) {
	for _, cfg := range []AIMDConfig{{Quota: 0, Tasks: 1}, {Quota: -1, Tasks: 1}, {Quota: math.Inf(1), Tasks: 1}, {Quota: math.NaN(), Tasks: 1}, {Quota: 10, Tasks: 0}} {
		if _, err := NewAIMD(cfg); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
}

func TestAIMDStartsAtItsShareAndPacesStrictly(t *testing.T) {
	l := newTestAIMD(t, 20, 4) // 5/s: a slot every 200 ms
	t0 := time.Unix(1000, 0)
	if w := l.admit(t0, false); w != 0 {
		t.Fatalf("the first send waited %s", w)
	}
	if w := l.admit(t0, false); w != 200*time.Millisecond {
		t.Errorf("the second send at once waits %s, want 200ms", w)
	}
	// 5 ms late for its slot (timer slop): the pace keeps its average.
	if w := l.admit(t0.Add(205*time.Millisecond), true); w != 0 {
		t.Fatalf("a late caller waited %s", w)
	}
	if w := l.admit(t0.Add(205*time.Millisecond), true); w != 195*time.Millisecond {
		t.Errorf("after a late slot the next waits %s, want 195ms", w)
	}
	// After a long idle time there is no burst: one now, the next a slot later.
	idle := t0.Add(time.Minute)
	if l.admit(idle, false) != 0 || l.admit(idle, false) != 200*time.Millisecond {
		t.Error("idle time was stored up as a burst")
	}
}

func TestAIMDDecreasesOncePerCongestion(t *testing.T) {
	l := newTestAIMD(t, 20, 2) // 10/s
	t0 := time.Unix(1000, 0)
	l.throttled(t0, t0.Add(10*time.Millisecond))
	if got := l.Rate(); math.Abs(got-7) > 1e-9 {
		t.Fatalf("rate after a throttle %g, want 7 (not halved)", got)
	}
	// Sends admitted before that cut were already on their way: no news.
	l.throttled(t0.Add(5*time.Millisecond), t0.Add(20*time.Millisecond))
	if got := l.Rate(); math.Abs(got-7) > 1e-9 {
		t.Errorf("a second throttle of the same congestion cut the rate to %g", got)
	}
	// A send admitted after the cut that is throttled again cuts again, and
	// the next slot moves out by one interval at the new rate.
	l.throttled(t0.Add(30*time.Millisecond), t0.Add(40*time.Millisecond))
	if got := l.Rate(); math.Abs(got-4.9) > 1e-9 {
		t.Errorf("rate %g, want 4.9", got)
	}
	if w := l.admit(t0.Add(40*time.Millisecond), true); w < 200*time.Millisecond {
		t.Errorf("right after a throttle the next send waits only %s", w)
	}
	for i := range 100 {
		l.throttled(t0.Add(time.Duration(i+1)*time.Second), t0.Add(time.Duration(i+1)*time.Second))
	}
	if got := l.Rate(); got != 20*aimdFloor {
		t.Errorf("rate after a throttle storm %g, want the floor %g", got, 20*aimdFloor)
	}
}

func TestAIMDGrowsOnlyWhenTheRateLimits(t *testing.T) {
	l := newTestAIMD(t, 20, 2)
	t0 := time.Unix(1000, 0)
	l.admit(t0, false) // did not wait: sending below the rate
	for range 1000 {
		l.succeeded()
	}
	if got := l.Rate(); got != 10 {
		t.Errorf("rate grew to %g while nothing waited for it", got)
	}
	l.admit(t0.Add(time.Second), true)
	for range 100_000 {
		l.succeeded()
	}
	if got := l.Rate(); got != 20 {
		t.Errorf("rate %g after many saturated successes, want the quota 20 and never more", got)
	}
}

func TestAIMDWaitEndsWithTheContext(t *testing.T) {
	l := newTestAIMD(t, 0.001, 1) // one send per 1000 s
	if err := l.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := l.Wait(ctx); err == nil {
		t.Error("Wait returned before the slot and without its context ending")
	}
}

// simResult is what a simulated run of tasks sharing one quota measured.
type simResult struct {
	accepted, throttled int
	rate                float64 // accepted per second, all tasks
	rateLast10s         float64
}

// simulate runs tasks AIMD limiters, each with an endless backlog, against
// an account that admits quota sends per second with a burst of quota (as
// SES's gate does), on a virtual clock. Each send's answer comes back after
// 10 to 50 ms.
func simulate(t *testing.T, quota float64, tasks, seedTasks int, d time.Duration) simResult {
	t.Helper()
	start := time.Unix(0, 0)
	account := rate.NewLimiter(rate.Limit(quota), int(math.Ceil(quota)))
	account.AllowN(start, 0)
	rnd := rand.New(rand.NewPCG(1, 2))
	ls := make([]*AIMD, tasks)
	q := &simQueue{}
	for i := range ls {
		ls[i] = newTestAIMD(t, quota, seedTasks)
		heap.Push(q, simEvent{at: start.Add(time.Duration(i) * time.Millisecond), task: i})
	}
	var res simResult
	last10s := 0
	end := start.Add(d)
	for q.Len() > 0 {
		e := heap.Pop(q).(simEvent)
		if e.at.After(end) {
			break
		}
		l := ls[e.task]
		if e.answer {
			if account.AllowN(e.at, 1) {
				res.accepted++
				if e.at.After(end.Add(-10 * time.Second)) {
					last10s++
				}
				l.succeeded()
			} else {
				res.throttled++
				l.throttled(e.admitted, e.at)
			}
			continue
		}
		if w := l.admit(e.at, true); w > 0 {
			heap.Push(q, simEvent{at: e.at.Add(w + time.Duration(rnd.IntN(2000))*time.Microsecond), task: e.task})
			continue
		}
		heap.Push(q, simEvent{at: e.at.Add(time.Duration(10+rnd.IntN(40)) * time.Millisecond), task: e.task, answer: true, admitted: e.at})
		heap.Push(q, simEvent{at: e.at, task: e.task}) // the next message is waiting
	}
	res.rate = float64(res.accepted) / d.Seconds()
	res.rateLast10s = float64(last10s) / 10
	return res
}

type simEvent struct {
	at       time.Time
	task     int
	answer   bool
	admitted time.Time
}

type simQueue []simEvent

func (p simQueue) Len() int           { return len(p) }
func (p simQueue) Less(i, j int) bool { return p[i].at.Before(p[j].at) }
func (p simQueue) Swap(i, j int)      { p[i], p[j] = p[j], p[i] }
func (p *simQueue) Push(x any)        { *p = append(*p, x.(simEvent)) }
func (p *simQueue) Pop() any {
	old := *p
	x := old[len(old)-1]
	*p = old[:len(old)-1]
	return x
}

// Tasks sharing one account quota: together they stay near the quota and
// are rarely throttled, whether the task count they were seeded with is
// right or autoscaling has changed it; one task alone reaches the quota.
func TestAIMDSharesTheQuota(t *testing.T) {
	for _, tc := range []struct {
		name                string
		quota               float64
		tasks, seed         int
		d                   time.Duration
		maxThrottled        float64 // of all sends
		minRate, minLast10s float64 // of the quota
	}{
		{"3 tasks on 20/s", 20, 3, 3, 10 * time.Minute, 0.03, 0.95, 0.9},
		{"1 task on 20/s", 20, 1, 1, time.Minute, 0, 0.99, 0.99},
		{"1 task seeded for 3 finds the quota", 20, 1, 3, time.Minute, 0, 0.8, 0.99},
		{"20 tasks on 14/s", 14, 20, 20, 10 * time.Minute, 0.05, 0.95, 0.9},
		{"20 tasks seeded for 3 on 14/s", 14, 20, 3, 10 * time.Minute, 0.06, 0.95, 0.9},
		{"3 tasks on 200/s", 200, 3, 3, time.Minute, 0.01, 0.95, 0.9},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := simulate(t, tc.quota, tc.tasks, tc.seed, tc.d)
			frac := float64(r.throttled) / float64(r.accepted+r.throttled)
			t.Logf("FIGURES aimd %s: accepted %d, throttled %d (%.2f%%), %.2f/s = %.1f%% of the quota, last 10 s %.1f%%",
				tc.name, r.accepted, r.throttled, 100*frac, r.rate, 100*r.rate/tc.quota, 100*r.rateLast10s/tc.quota)
			if frac > tc.maxThrottled {
				t.Errorf("%.2f%% of sends throttled, want at most %.2f%%", 100*frac, 100*tc.maxThrottled)
			}
			if r.rate < tc.minRate*tc.quota || r.rateLast10s < tc.minLast10s*tc.quota {
				t.Errorf("%.2f/s overall and %.2f/s in the last 10 s, want %.0f%% and %.0f%% of %g", r.rate, r.rateLast10s, 100*tc.minRate, 100*tc.minLast10s, tc.quota)
			}
			// The account's burst (one second's worth) is all it can pass above the quota.
			if r.rate > tc.quota*(1+1/tc.d.Seconds()) {
				t.Errorf("%.2f/s is above the quota", r.rate)
			}
		})
	}
}
