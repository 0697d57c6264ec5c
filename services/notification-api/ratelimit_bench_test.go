package main

import (
	"fmt"
	"testing"
	"time"

	"herald/services/contract"
)

// BenchmarkSharedRateLimit is the cost of the per-key limit shared through
// the store: DynamoDB requests per accepted notification, and per second
// of one key's traffic, at the default settings (HERALD_RATE_LIMIT 100/s,
// HERALD_RATE_BURST 200, HERALD_RATE_LEASE 1s), for a key's demand at half,
// once and three times its limit, spread evenly over 3 and 12 API tasks,
// against dynalite. Time is simulated (one op is one second of the key's
// traffic), so the ratios do not depend on the machine's load; ns/op is
// the real time the op took, dynalite's round trips included.
//
//	go test -run='^$' -bench=SharedRateLimit ./services/notification-api
func BenchmarkSharedRateLimit(b *testing.B) {
	limit, burst, lease := contract.RateLimit.Default, contract.RateBurst.Default, contract.RateLease.Default
	type scenario struct {
		tasks  int
		demand float64 // of the limit
		lease  time.Duration
	}
	var scenarios []scenario
	for _, tasks := range []int{3, 12} {
		for _, demand := range []float64{0.5, 1, 3} {
			scenarios = append(scenarios, scenario{tasks, demand, lease})
		}
	}
	// The knob: a longer lease, fewer writes (and a larger overshoot bound).
	scenarios = append(scenarios, scenario{12, 0.5, 5 * time.Second}, scenario{12, 1, 5 * time.Second})
	for _, sc := range scenarios {
		tasks, demand, lease := sc.tasks, sc.demand, sc.lease
		{
			b.Run(fmt.Sprintf("tasks=%d/demand=%gx/lease=%s", tasks, demand, lease), func(b *testing.B) {
				emu, table := dynamo.Table(b)
				clock := &fakeClock{t: time.Unix(1700000000, 0)}
				cfg := rateConfig(limit, burst, lease, tasks)
				ts := make([]rateTask, tasks)
				for i := range ts {
					ts[i] = newRateTask(b, emu, table, cfg, clock.now)
				}
				var accepted, requests, seconds int
				before := emu.Stats().Operations["UpdateItem"].ConditionalFailures
				for b.Loop() {
					a, r := simulate(b, emu, clock, ts, demand*limit, time.Second)
					accepted, requests, seconds = accepted+a, requests+r, seconds+1
				}
				failed := emu.Stats().Operations["UpdateItem"].ConditionalFailures - before
				if bound := burst + int(limit)*seconds; accepted > bound {
					b.Fatalf("accepted %d in %d s, over burst + rate × t = %d", accepted, seconds, bound)
				}
				b.ReportMetric(float64(requests)/float64(accepted), "ddb-req/accepted")
				b.ReportMetric(float64(requests)/float64(seconds), "ddb-req/s")
				b.ReportMetric(float64(accepted)/float64(seconds), "accepted/s")
				// Failed conditions: a task that saw the bucket full while
				// another had just leased, or one over the limit whose view
				// was stale. Each costs a write unit as well.
				b.ReportMetric(float64(failed)/float64(requests), "failed/req")
			})
		}
	}
}
