package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"herald/services/devstack"
)

// Two API processes share one state store, as the tasks of the service do:
// one key posting alternately to both for a few seconds gets the one limit
// of services/README.md ("The per-key rate limit"), at most burst + rate ×
// (elapsed + lease), where two per-process limits would let burst + rate ×
// elapsed through each. Every accepted notification is delivered once; every
// refusal is a 429 with Retry-After. Issue 16's acceptance.
//
// The clients post at six times the limit, paced, and the sender waits
// until the posting ends, so the test does not queue other writes in the
// DynamoDB emulator ahead of the leases it measures (dynalite answers one
// by one, slowly on a loaded machine): a lease the store does not answer
// within the API's 500 ms sends the key to the documented local fallback
// for 5 s (rate and burst / HERALD_RATE_TASKS). Each decision made by the
// fallback (RateFallback) may then be one acceptance beyond the shared
// bound: the bound grows by their count, and the FIGURES line shows it.
func TestRateLimitHoldsAcrossTwoAPIs(t *testing.T) {
	const (
		apis    = 2
		limit   = 10.0 // HERALD_RATE_LIMIT, per second
		burst   = 20   // HERALD_RATE_BURST
		lease   = time.Second
		demand  = 60 // posts a second, to both APIs together
		clients = 16
		// The posting runs this long, and stops at maxPosts whatever the
		// clock says (a bound on the loop).
		postFor  = 4 * time.Second
		maxPosts = 1000
		// A token per process for rounding: the bound is in whole tokens.
		slack = apis
	)
	s := startStack(t, devstack.Config{APIs: apis, APIVariables: map[string]string{
		"HERALD_RATE_LIMIT": fmt.Sprint(limit),
		"HERALD_RATE_BURST": fmt.Sprint(burst),
		"HERALD_RATE_LEASE": lease.String(),
		// As the stacks set it: the API's task count, so the store's
		// fallback keeps the tasks together under the limit too.
		"HERALD_RATE_TASKS": fmt.Sprint(apis),
	}})
	var targets []*api
	for i := 1; i <= apis; i++ {
		a := newAPI(s)
		a.base = s.URL(devstack.APIN(i))
		if a.base == "" || (i > 1 && a.base == targets[0].base) {
			t.Fatalf("API %d has URL %q", i, a.base)
		}
		targets = append(targets, a)
	}
	ctx := context.Background()
	l := newLedger("rate limit")
	if err := s.Stop(devstack.Sender); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex // guards the counts below
	posts, acceptedBy := make([]int, apis), make([]int, apis)
	refused := 0
	var failures []string
	start := time.Now()
	work := make(chan int)
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for i := range work {
				k := i % apis // alternately to each API
				n := notification{To: []string{fmt.Sprintf("user%d@example.org", i)}, Subject: l.subject(i), Text: "rate limited"}
				l.post()
				r, err := targets[k].post(ctx, n)
				var acc accepted
				mu.Lock()
				posts[k]++
				switch {
				case err == nil && r.Status == http.StatusAccepted && json.Unmarshal(r.Body, &acc) == nil && acc.ID != "":
					l.accept(n.Subject, acc.ID)
					acceptedBy[k]++
				case err == nil && r.Status == http.StatusTooManyRequests && r.Header.Get("Retry-After") != "":
					refused++
				default:
					failures = append(failures, fmt.Sprintf("API %d, %q: %v %s", k+1, n.Subject, err, r))
				}
				mu.Unlock()
			}
		})
	}
	tick := time.NewTicker(time.Second / demand)
	for i := 0; i < maxPosts && time.Since(start) < postFor; i++ {
		<-tick.C
		work <- i // waits while every client is busy: the machine is slow
	}
	tick.Stop()
	close(work)
	wg.Wait()
	elapsed := time.Since(start)
	if len(failures) > 0 {
		t.Fatalf("%d answers neither 202 nor 429 with Retry-After; first: %s", len(failures), failures[0])
	}

	if err := s.Restart(ctx, devstack.Sender); err != nil {
		t.Fatal(err)
	}
	accepted := l.len()
	shared := burst + int(math.Ceil(limit*(elapsed+lease).Seconds())) + slack
	perProcess := burst + int(limit*elapsed.Seconds()) // what one process alone lets through
	var split []string
	for k := range apis {
		split = append(split, fmt.Sprintf("%d of %d", acceptedBy[k], posts[k]))
	}

	l.waitAllDelivered(t, s, 2*time.Minute)
	waitDrained(t, s, time.Minute)
	// SIGTERM flushes the APIs' metrics; each must drain and exit cleanly.
	var leases, fallbacks float64
	for i := 1; i <= apis; i++ {
		c := devstack.APIN(i)
		if err := s.Stop(c); err != nil {
			t.Fatalf("%s on SIGTERM: %v", c, err)
		}
		m := senderMetricsOf(t, s, c)
		leases += m["RateLeases"]
		fallbacks += m["RateFallback"]
	}
	bound := shared + int(fallbacks)
	if fallbacks > 0 {
		t.Logf("the store missed the lease timeout: %g decisions by the fallback; the bound grows to %d, this run does not show the shared limit alone", fallbacks, bound)
	}
	l.report(t, s, "rate limit, two APIs", start, 0, fmt.Sprintf(
		"one key for %s: 202 %d (by API: %s), 429 %d; limit %g/s, burst %d, lease %s: bound burst + rate × (elapsed + lease) + %d = %d, two per-process limits %d; RateLeases %g, RateFallback %g",
		elapsed.Round(time.Millisecond), accepted, strings.Join(split, ", "), refused,
		limit, burst, lease, slack, shared, apis*perProcess, leases, fallbacks))

	// The test can tell: each API was asked for more than one process's
	// limit, so two per-process limits would accept about apis × perProcess,
	// more than the shared bound.
	for k := range apis {
		if int(posts[k]) <= perProcess {
			t.Fatalf("API %d was asked %d times, not over one process's limit %d: the test cannot tell shared from per-process", k+1, posts[k], perProcess)
		}
	}
	if shared >= apis*perProcess {
		t.Fatalf("the shared bound %d is not under two per-process limits %d: the test cannot tell", shared, apis*perProcess)
	}
	if accepted > bound {
		t.Errorf("ACCEPTED %d, over the shared limit's bound %d (with %g fallback decisions; two per-process limits: %d)", accepted, bound, fallbacks, apis*perProcess)
	}
	// Not closed, and both processes served the key.
	if accepted < burst/2 {
		t.Errorf("accepted %d, under half the burst %d", accepted, burst)
	}
	for k := range apis {
		if acceptedBy[k] == 0 {
			t.Errorf("API %d accepted nothing: the key's tokens did not reach it", k+1)
		}
	}
	if leases == 0 {
		t.Error("RateLeases 0: the APIs did not use the shared store")
	}
}
