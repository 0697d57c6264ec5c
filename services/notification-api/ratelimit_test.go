package main

// The per-key rate limit shared through the store, against dynalite
// (services/devstack/dynamolocal): one emulator for the test binary, a table
// per test. Skipped only when node_modules has no dynalite; `make test`
// installs it.

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"herald/services/contract"
	"herald/services/devstack/dynamolocal"
	"herald/services/devstack/dynamolocal/dynamotest"
	"herald/services/internal/herald"
	"herald/services/internal/store"
)

// The API's tests need the emulator: without it they fail, not skip.
var dynamo = dynamotest.Emulator{Root: "../..", Required: true}

func TestMain(m *testing.M) { os.Exit(dynamo.Run(m)) }

// rateTask is one API task's limiter on the shared table, or on none
// (table ""): the per-process limit.
type rateTask struct {
	lim     *rateLimiter
	metrics *herald.Metrics
}

func newRateTask(tb testing.TB, emu *dynamolocal.Server, table string, cfg config, now func() time.Time) rateTask {
	tb.Helper()
	m := herald.NewMetrics(io.Discard, "test", contract.API)
	var leaser bucketLeaser
	if table != "" {
		b, err := store.NewRateBuckets(emu.Client(), table, now)
		if err != nil {
			tb.Fatal(err)
		}
		leaser = b
	}
	lim := newRateLimiter(cfg, leaser, now, m, slog.New(slog.NewJSONHandler(io.Discard, nil)))
	if lim.shared != nil {
		// A loaded machine's dynalite may take longer than AWS's DynamoDB:
		// these tests are about the limit, not about the fallback.
		lim.shared.timeout = 10 * time.Second
	}
	return rateTask{lim: lim, metrics: m}
}

func rateConfig(limit float64, burst int, lease time.Duration, tasks int) config {
	cfg := testConfig()
	cfg.RateLimit, cfg.RateBurst, cfg.RateLease, cfg.RateTasks = limit, burst, lease, tasks
	return cfg
}

// simulate sends requests of one key to the tasks in turn, one every
// 1/perSecond on clock, for d; it returns the accepted, and the DynamoDB
// requests the emulator saw.
func simulate(t testing.TB, emu *dynamolocal.Server, clock *fakeClock, tasks []rateTask, perSecond float64, d time.Duration) (accepted, requests int) {
	step := time.Duration(float64(time.Second) / perSecond)
	var before dynamolocal.Stats
	if emu != nil {
		before = emu.Stats()
	}
	for i := range int(d / step) {
		if _, ok := tasks[i%len(tasks)].lim.take(context.Background(), "svc", 1); ok {
			accepted++
		}
		clock.advance(step)
	}
	if emu != nil {
		requests = int(emu.Stats().Sub(before).Total())
	}
	return accepted, requests
}

// TestSharedRateLimitHoldsAcrossTasks: three tasks sharing the store hold
// one key to burst + rate × t, where three per-process limits let three
// times that through. Simulated time, so the figures do not depend on the
// machine's load.
func TestSharedRateLimitHoldsAcrossTasks(t *testing.T) {
	const (
		limit, burst = 50.0, 100
		d            = 10 * time.Second
	)
	bound := burst + int(limit*d.Seconds())
	for _, tc := range []struct {
		name   string
		shared bool
		demand float64 // requests a second, all tasks together
	}{
		{"under the limit", true, 40},
		{"at three times the limit", true, 150},
		{"per process, three times the limit", false, 150},
	} {
		t.Run(tc.name, func(t *testing.T) {
			emu, table := dynamo.Table(t)
			if !tc.shared {
				emu, table = nil, ""
			}
			clock := &fakeClock{t: time.Unix(1700000000, 0)}
			cfg := rateConfig(limit, burst, time.Second, 3)
			tasks := []rateTask{newRateTask(t, emu, table, cfg, clock.now), newRateTask(t, emu, table, cfg, clock.now), newRateTask(t, emu, table, cfg, clock.now)}
			sent := int(tc.demand * d.Seconds())
			accepted, requests := simulate(t, emu, clock, tasks, tc.demand, d)
			t.Logf("%s: %d of %d accepted in %s (burst %d + rate %g/s: %d); %d DynamoDB requests, %.3f per accepted",
				tc.name, accepted, sent, d, burst, limit, bound, requests, float64(requests)/float64(accepted))
			switch {
			case !tc.shared:
				// What the issue saw: each process its own bucket.
				if accepted <= bound {
					t.Fatalf("per-process limits accepted %d, expected more than the bound %d: the test cannot tell", accepted, bound)
				}
			case tc.demand*d.Seconds() <= float64(bound):
				if accepted != sent {
					t.Errorf("under the limit: %d of %d accepted", accepted, sent)
				}
			default:
				if accepted > bound {
					t.Errorf("accepted %d, over burst + rate × t = %d", accepted, bound)
				}
				// Tokens leased and dropped unspent are the only loss.
				if accepted < bound*9/10 {
					t.Errorf("accepted %d, under 90%% of the %d the limit allows", accepted, bound)
				}
			}
			if tc.shared {
				var leases float64
				for _, tk := range tasks {
					leases += tk.metrics.Totals()["RateLeases"]
					if f := tk.metrics.Totals()["RateFallback"]; f != 0 {
						t.Errorf("%v notifications decided by the fallback", f)
					}
				}
				if int(leases) != requests {
					t.Errorf("RateLeases %v, the emulator saw %d requests", leases, requests)
				}
				// Leases sized to each task's demand, and slices of a
				// quarter lease period's refill over the limit: at most a
				// write per four notifications here (the figures at the
				// default settings are in BENCHMARKS.md).
				if requests > accepted/4 {
					t.Errorf("%d DynamoDB requests for %d accepted, want at most one per four", requests, accepted)
				}
			}
		})
	}
}

// TestSharedRateLimitWaitsWithoutAsking: a task that found the bucket
// empty refuses with the Retry-After the bucket implies, and asks the
// store nothing until then.
func TestSharedRateLimitWaitsWithoutAsking(t *testing.T) {
	emu, table := dynamo.Table(t)
	clock := &fakeClock{t: time.Unix(1700000000, 0)}
	cfg := rateConfig(10, 10, time.Second, 2)
	a, b := newRateTask(t, emu, table, cfg, clock.now), newRateTask(t, emu, table, cfg, clock.now)
	// Task a takes the whole burst (a batch of 10).
	if _, ok := a.lim.take(context.Background(), "svc", 10); !ok {
		t.Fatal("a full bucket refused the burst")
	}
	// Task b finds none: 100 ms for one token at 10/s.
	wait, ok := b.lim.take(context.Background(), "svc", 1)
	if ok || wait != 100*time.Millisecond {
		t.Fatalf("second task: ok %v, retry after %s; want refused, 100ms", ok, wait)
	}
	before := emu.Stats()
	clock.advance(99 * time.Millisecond)
	if wait, ok := b.lim.take(context.Background(), "svc", 1); ok || wait != time.Millisecond {
		t.Fatalf("99 ms later: ok %v, retry after %s", ok, wait)
	}
	if n := emu.Stats().Sub(before).Total(); n != 0 {
		t.Errorf("%d DynamoDB requests while waiting", n)
	}
	clock.advance(time.Millisecond)
	if _, ok := b.lim.take(context.Background(), "svc", 1); !ok {
		t.Fatal("refused once the token is back")
	}
	// Another key has its own bucket.
	if _, ok := b.lim.take(context.Background(), "other", 5); !ok {
		t.Fatal("another key refused")
	}

	// A second later both views show 10 tokens; a takes them all. b asks
	// for the token its view shows, loses, and waits a slice (one token,
	// 100 ms) longer than the bucket implies: tasks that lost together
	// spread out.
	clock.advance(time.Second)
	if _, ok := a.lim.take(context.Background(), "svc", 10); !ok {
		t.Fatal("a refused a refilled bucket")
	}
	before = emu.Stats()
	if wait, ok := b.lim.take(context.Background(), "svc", 1); ok || wait != 200*time.Millisecond {
		t.Fatalf("after losing the race: ok %v, retry after %s; want refused, 200ms", ok, wait)
	}
	if n := emu.Stats().Sub(before).Total(); n != 1 {
		t.Errorf("%d DynamoDB requests for the lost lease, want 1", n)
	}
}

// TestSharedRateLimitDropsOldTokens: leased tokens not spent within the
// lease period are dropped, not spent later.
func TestSharedRateLimitDropsOldTokens(t *testing.T) {
	emu, table := dynamo.Table(t)
	clock := &fakeClock{t: time.Unix(1700000000, 0)}
	task := newRateTask(t, emu, table, rateConfig(1, 40, time.Second, 1), clock.now)
	take := func() bool { _, ok := task.lim.take(context.Background(), "svc", 1); return ok }
	// Demand of 20 in 100 ms sizes the second lease at a quarter of the
	// burst: 10 tokens.
	for range 20 {
		if !take() {
			t.Fatal("refused within the burst")
		}
		clock.advance(5 * time.Millisecond)
	}
	leases := task.metrics.Totals()["RateLeases"]
	held := task.lim.leased["svc"].tokens
	if held == 0 || leases > 3 {
		t.Fatalf("%v leases, %d tokens held; want a few leases of several tokens", leases, held)
	}
	// A lease period later the held tokens are gone: the next request
	// leases again.
	clock.advance(time.Second)
	take()
	if got := task.metrics.Totals()["RateLeases"]; got != leases+1 {
		t.Errorf("leases %v after the period, want %v", got, leases+1)
	}
}

// TestSharedRateLimitFallsBack: while the store fails, each task limits a
// key to the rate and burst divided by HERALD_RATE_TASKS, counts it, and
// asks the store again after rateStoreRetry.
func TestSharedRateLimitFallsBack(t *testing.T) {
	emu, table := dynamo.Table(t)
	clock := &fakeClock{t: time.Unix(1700000000, 0)}
	cfg := rateConfig(10, 20, time.Second, 4) // fallback: 2.5/s, burst 5
	task := newRateTask(t, emu, table, cfg, clock.now)
	task.lim.shared.timeout = 300 * time.Millisecond
	if err := emu.SetFault(dynamolocal.FaultHang, time.Minute); err != nil {
		t.Fatal(err)
	}
	defer emu.SetFault(dynamolocal.FaultHang, 0)
	accepted := 0
	for range 8 {
		if _, ok := task.lim.take(context.Background(), "svc", 1); ok {
			accepted++
		}
	}
	totals := task.metrics.Totals()
	if accepted != 5 || totals["RateFallback.unavailable"] != 8 || totals["RateLeases"] != 1 {
		t.Fatalf("accepted %d by the fallback (want its burst, 5); totals %v (want 8 fallbacks, 1 lease)", accepted, totals)
	}
	if err := emu.SetFault(dynamolocal.FaultHang, 0); err != nil {
		t.Fatal(err)
	}
	// Still in the fallback period: no request to the store.
	clock.advance(rateStoreRetry - time.Millisecond)
	task.lim.take(context.Background(), "svc", 1)
	if got := task.metrics.Totals()["RateLeases"]; got != 1 {
		t.Errorf("%v leases within the fallback period", got)
	}
	clock.advance(time.Millisecond)
	if _, ok := task.lim.take(context.Background(), "svc", 1); !ok || task.metrics.Totals()["RateLeases"] != 2 {
		t.Errorf("after the period: ok %v, totals %v; want a lease", ok, task.metrics.Totals())
	}

	// A table that does not exist is a misconfiguration: "error".
	other := newRateTask(t, emu, "herald-no-such-table", cfg, clock.now)
	if _, ok := other.lim.take(context.Background(), "svc", 1); !ok || other.metrics.Totals()["RateFallback.error"] != 1 {
		t.Errorf("no table: ok %v, totals %v", ok, other.metrics.Totals())
	}
}

// TestRateLimitHoldsAcrossTwoServers is issue 16's acceptance: two API
// servers sharing one table, real time, eight clients as fast as they go
// until 150 requests are sent. The key's accepted notifications stay within
// burst + rate × the time it ran, where the per-process limits of two
// servers let about twice that through. The limit is low against the
// burst, so the bound holds whatever the machine's speed: a slow run only
// raises both sides.
func TestRateLimitHoldsAcrossTwoServers(t *testing.T) {
	const (
		limit, burst = 2.0, 40
		requests     = 150
	)
	for _, shared := range []bool{true, false} {
		t.Run(fmt.Sprintf("shared=%v", shared), func(t *testing.T) {
			cfg := rateConfig(limit, burst, time.Second, 2)
			var servers []*harness
			_, table := dynamo.Table(t)
			for range 2 {
				d := deps{}
				if shared {
					b, err := store.NewRateBuckets(dynamo.Server(t).Client(), table, time.Now)
					if err != nil {
						t.Fatal(err)
					}
					d.rateBuckets = b
				}
				h := newHarness(t, cfg, nil, d)
				if h.srv.limiter.shared != nil {
					h.srv.limiter.shared.timeout = 10 * time.Second
				}
				servers = append(servers, h)
			}
			var accepted, sent atomic.Int64
			deadline := time.Now().Add(2 * time.Minute) // a bound on the loop, not a figure
			start := time.Now()
			var wg sync.WaitGroup
			for i := range 8 {
				h := servers[i%2]
				wg.Go(func() {
					for sent.Add(1) <= requests && time.Now().Before(deadline) {
						if rec := h.do(http.MethodPost, "/api/notifications", nil, valid(nil)); rec.Code == http.StatusAccepted {
							accepted.Add(1)
						} else if rec.Code != http.StatusTooManyRequests {
							t.Errorf("status %d: %s", rec.Code, rec.Body)
							return
						}
					}
				})
			}
			wg.Wait()
			elapsed := time.Since(start)
			bound := burst + int(limit*elapsed.Seconds())
			t.Logf("shared=%v: %d of %d accepted in %s by two servers; burst + rate × t = %d",
				shared, accepted.Load(), min(sent.Load(), requests), elapsed.Round(time.Millisecond), bound)
			if shared {
				if int(accepted.Load()) > bound {
					t.Errorf("accepted %d, over %d", accepted.Load(), bound)
				}
				// Not closed. Leased tokens a slow client could not spend in
				// a lease period are dropped, so a loaded machine accepts
				// less than the burst; TestSharedRateLimitHoldsAcrossTasks
				// bounds the loss in simulated time.
				if accepted.Load() < burst/2 {
					t.Errorf("accepted %d, under half the burst", accepted.Load())
				}
				for _, h := range servers {
					if f := h.metrics.Totals()["RateFallback"]; f != 0 {
						t.Errorf("%v decided by the fallback", f)
					}
				}
			} else if int(accepted.Load()) <= bound {
				t.Errorf("per process: accepted %d, not over %d: the test cannot tell", accepted.Load(), bound)
			}
		})
	}
}
