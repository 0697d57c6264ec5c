package tests

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"herald/services/devstack"
	"herald/services/devstack/dynamolocal"
)

// Idempotency-Key end to end (issue 11): the API on the state store in the
// DynamoDB emulator, the real sender, the SES emulator counting mails.

// idemTotal is how many notifications each scenario posts.
const idemTotal = 300

// postKeyed posts n with the Idempotency-Key key, once.
func (a *api) postKeyed(ctx context.Context, key string, n notification) (reply, error) {
	hdr := map[string]string{"Content-Type": "application/json", "Authorization": "Bearer " + a.key}
	if key != "" {
		hdr["Idempotency-Key"] = key
	}
	return a.request(ctx, http.MethodPost, "/api/notifications", hdr, mustJSON(n))
}

// postUntilAnswered posts n with key until the API answers 202, as a client
// that holds a key retries: after a connection error, a 503 or a 409,
// waiting Retry-After (at most 2 s at a time, the API may come back
// sooner). It gives up at the deadline, and on any other answer.
func (a *api) postUntilAnswered(ctx context.Context, key string, n notification, deadline time.Time) (acc accepted, tries int, err error) {
	for tries = 1; ; tries++ {
		r, err := a.postKeyed(ctx, key, n)
		wait := 100 * time.Millisecond
		switch {
		case err != nil:
		case r.Status == http.StatusAccepted:
			if err := json.Unmarshal(r.Body, &acc); err != nil || acc.ID == "" {
				return acc, tries, fmt.Errorf("202 %s", r)
			}
			return acc, tries, nil
		case r.Status == http.StatusServiceUnavailable || r.Status == http.StatusConflict:
			if s, _ := strconv.Atoi(r.Header.Get("Retry-After")); s > 0 {
				wait = min(time.Duration(s)*time.Second, 2*time.Second)
			}
		default:
			return acc, tries, fmt.Errorf("answer %s", r)
		}
		if time.Now().Add(wait).After(deadline) {
			return acc, tries, fmt.Errorf("no 202 by the deadline; last: %v %s", err, r)
		}
		select {
		case <-ctx.Done():
			return acc, tries, ctx.Err()
		case <-time.After(wait):
		}
	}
}

// forEach runs f on 0..n-1 from clients goroutines.
func forEach(n, clients int, f func(i int)) {
	work := make(chan int)
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for i := range work {
				f(i)
			}
		})
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
}

// scenario is what each scenario starts with: a pipeline, its API, a ledger
// and a key prefix unique to the run.
type scenario struct {
	s   *devstack.Stack
	a   *api
	l   *ledger
	key string
	mu  sync.Mutex
	bad []string // failures, from any client
}

func startScenario(t *testing.T, name string) *scenario {
	s := startStack(t, devstack.Config{APIVariables: fastPosting})
	return &scenario{s: s, a: newAPI(s), l: newLedger(name), key: runID()}
}

func (sc *scenario) fail(format string, args ...any) {
	sc.mu.Lock()
	sc.bad = append(sc.bad, fmt.Sprintf(format, args...))
	sc.mu.Unlock()
}

// failures is an error naming the first failure, nil for none.
func (sc *scenario) failures() error {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if len(sc.bad) == 0 {
		return nil
	}
	return fmt.Errorf("%d failures; first: %s", len(sc.bad), sc.bad[0])
}

// senderDeduplicates reports whether the running sender claims each
// notification id before sending (it tags every send with the id then).
func senderDeduplicates(s *devstack.Stack, prefix string) bool {
	for _, send := range s.Gate().Sends() {
		if strings.HasPrefix(send.Subject, prefix) {
			return send.Tags["herald-id"] != ""
		}
	}
	return false
}

// The same request posted twice with one key: the same id both times, one
// mail per notification.
func TestIdempotencyKeySameRequestTwice(t *testing.T) {
	sc := startScenario(t, "idem-twice")
	s, a, l := sc.s, sc.a, sc.l
	ctx := context.Background()
	start := time.Now()
	forEach(idemTotal, 8, func(i int) {
		n := simple(l, i, 1)[0]
		l.post()
		r1, err1 := a.postKeyed(ctx, sc.key+strconv.Itoa(i), n)
		l.post()
		r2, err2 := a.postKeyed(ctx, sc.key+strconv.Itoa(i), n)
		var a1, a2 accepted
		if err1 != nil || err2 != nil || r1.Status != 202 || r2.Status != 202 ||
			json.Unmarshal(r1.Body, &a1) != nil || json.Unmarshal(r2.Body, &a2) != nil || a1.ID == "" || a1 != a2 {
			sc.fail("%d: %v %s / %v %s", i, err1, r1, err2, r2)
			return
		}
		l.accept(n.Subject, a1.ID)
	})
	if err := sc.failures(); err != nil {
		t.Fatalf("pairs not answered 202 with one id: %v", err)
	}
	l.waitAllDelivered(t, s, 2*time.Minute)
	waitDrained(t, s, 30*time.Second)
	c := l.report(t, s, "same key posted twice", start, 0, fmt.Sprintf("%d requests, %d notifications, DynamoDB %s", 2*idemTotal, idemTotal, s.Dynamo().Stats()))
	if c.sends != idemTotal {
		t.Errorf("%d mails for %d notifications posted twice each", c.sends, idemTotal)
	}
}

// A key reused with another body: 422, and that body is never queued.
func TestIdempotencyKeyReusedWithAnotherBody(t *testing.T) {
	sc := startScenario(t, "idem-reuse")
	s, a, l := sc.s, sc.a, sc.l
	ctx := context.Background()
	start := time.Now()
	var unprocessable atomic.Int64
	forEach(idemTotal, 8, func(i int) {
		n := simple(l, i, 1)[0]
		l.post()
		r, err := a.postKeyed(ctx, sc.key+strconv.Itoa(i), n)
		var acc accepted
		if err != nil || r.Status != 202 || json.Unmarshal(r.Body, &acc) != nil {
			sc.fail("%d: %v %s", i, err, r)
			return
		}
		l.accept(n.Subject, acc.ID)
		other := n
		other.Subject = l.prefix + "other-" + strconv.Itoa(i)
		r, err = a.postKeyed(ctx, sc.key+strconv.Itoa(i), other)
		var p struct{ Type string }
		if err != nil || r.Status != http.StatusUnprocessableEntity || json.Unmarshal(r.Body, &p) != nil || p.Type != "urn:herald:problem:idempotency-key-reused" {
			sc.fail("%d reused: %v %s", i, err, r)
			return
		}
		unprocessable.Add(1)
	})
	if err := sc.failures(); err != nil {
		t.Fatal(err)
	}
	l.waitAllDelivered(t, s, 2*time.Minute)
	waitDrained(t, s, 30*time.Second)
	// The report counts a mail of an "other-" subject as unexpected: the
	// API never accepted one.
	c := l.report(t, s, "same key another body", start, 0, fmt.Sprintf("%d answered 422, DynamoDB %s", unprocessable.Load(), s.Dynamo().Stats()))
	if c.sends != idemTotal || unprocessable.Load() != idemTotal {
		t.Errorf("%d mails, %d answered 422; want %d and %d", c.sends, unprocessable.Load(), idemTotal, idemTotal)
	}
}

// The API SIGKILLed while clients post with their keys, then restarted;
// the clients retry until answered. Every notification is delivered, none
// as two notifications (each subject's retries carry one id), and with the
// sender's deduplication none twice.
func TestAPIKilledClientsRetryWithKeys(t *testing.T) {
	s := startStack(t, devstack.Config{APIVariables: fastPosting})
	a := newAPI(s)
	a.http.Timeout = 10 * time.Second
	ctx := context.Background()
	l := newLedger("api-sigkill-keys")
	key := runID()
	start := time.Now()
	deadline := start.Add(3 * time.Minute)
	var answered, retried atomic.Int64
	killAt := int64(idemTotal / 4)
	killed := make(chan struct{})
	var killOnce sync.Once
	var mu sync.Mutex
	var failures []string
	ids := map[string]string{} // subject -> the first id answered
	clients := 16
	var wg sync.WaitGroup
	wg.Go(func() {
		forEach(idemTotal, clients, func(i int) {
			n := simple(l, i, 1)[0]
			l.post()
			acc, tries, err := a.postUntilAnswered(ctx, key+strconv.Itoa(i), n, deadline)
			if tries > 1 {
				retried.Add(1)
			}
			if err != nil {
				mu.Lock()
				failures = append(failures, fmt.Sprintf("%d: %v", i, err))
				mu.Unlock()
				return
			}
			mu.Lock()
			if old, ok := ids[n.Subject]; ok && old != acc.ID {
				failures = append(failures, fmt.Sprintf("%q answered ids %s and %s", n.Subject, old, acc.ID))
			}
			ids[n.Subject] = acc.ID
			mu.Unlock()
			l.accept(n.Subject, acc.ID)
			if answered.Add(1) == killAt {
				killOnce.Do(func() { close(killed) })
			}
		})
	})
	var inFlight int
	select {
	case <-killed:
	case <-time.After(time.Minute):
		t.Fatal("the first quarter was not answered within a minute")
	}
	before := answered.Load()
	if err := s.Kill(devstack.API); err != nil {
		t.Fatal(err)
	}
	inFlight = clients // at most one request per client was cut
	killedAfter := answered.Load()
	if err := s.Restart(ctx, devstack.API); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("%d of %d notifications failed; first: %s", len(failures), idemTotal, failures[0])
	}
	if killedAfter >= idemTotal {
		t.Fatal("every notification was answered before the kill: the scenario proves nothing")
	}
	l.waitAllDelivered(t, s, 3*time.Minute)
	waitDrained(t, s, 30*time.Second)
	maxDup := inFlight
	dedup := senderDeduplicates(s, l.prefix)
	if dedup {
		maxDup = 0
	}
	l.report(t, s, "API SIGKILL, clients retry with keys", start, maxDup,
		fmt.Sprintf("killed at %d answered, %d clients retried, sender deduplicates: %t", before, retried.Load(), dedup))
}

// A store outage: keyed requests are refused with 503 and Retry-After, and
// nothing of them is queued; unkeyed requests are accepted. After the
// outage the refused ones go through, each once.
func TestStoreOutage(t *testing.T) {
	s := startStack(t, devstack.Config{APIVariables: fastPosting})
	a := newAPI(s)
	ctx := context.Background()
	l := newLedger("store-outage")
	key := runID()
	start := time.Now()
	half := idemTotal / 2
	if err := s.Dynamo().SetFault(dynamolocal.FaultUnavailable, 5*time.Minute); err != nil {
		t.Fatal(err)
	}
	var refused, bad atomic.Int64
	var mu sync.Mutex
	var firstBad string
	forEach(idemTotal, 8, func(i int) {
		n := simple(l, i, 1)[0]
		l.post()
		if i < half {
			r, err := a.postKeyed(ctx, key+strconv.Itoa(i), n)
			var p struct{ Type string }
			if err == nil && r.Status == http.StatusServiceUnavailable && r.Header.Get("Retry-After") != "" &&
				json.Unmarshal(r.Body, &p) == nil && p.Type == "urn:herald:problem:store-unavailable" {
				refused.Add(1)
				return
			}
			bad.Add(1)
			mu.Lock()
			firstBad = fmt.Sprintf("keyed %d: %v %s", i, err, r)
			mu.Unlock()
			return
		}
		r, err := a.postKeyed(ctx, "", n)
		var acc accepted
		if err != nil || r.Status != http.StatusAccepted || json.Unmarshal(r.Body, &acc) != nil {
			bad.Add(1)
			mu.Lock()
			firstBad = fmt.Sprintf("unkeyed %d: %v %s", i, err, r)
			mu.Unlock()
			return
		}
		l.accept(n.Subject, acc.ID)
	})
	if bad.Load() > 0 {
		t.Fatalf("%d answers not as the design says (keyed 503 store-unavailable, unkeyed 202); e.g. %s", bad.Load(), firstBad)
	}
	// Nothing keyed reached the queue: only unkeyed mail arrives. Wait for
	// those, then check no keyed subject was sent. (A sender that pauses on
	// the store's outage sends them once the store is back.)
	if err := s.Dynamo().SetFault(dynamolocal.FaultUnavailable, 0); err != nil {
		t.Fatal(err)
	}
	outage := time.Since(start)
	l.waitAllDelivered(t, s, 2*time.Minute)
	waitDrained(t, s, 30*time.Second)
	if per, _ := delivered(s, l.prefix); len(per) != idemTotal-half {
		t.Fatalf("%d subjects sent, want the %d unkeyed ones: a refused keyed request was queued", len(per), idemTotal-half)
	}
	// After the outage, the same keys go through, once.
	deadline := time.Now().Add(time.Minute)
	var errs []error
	forEach(half, 8, func(i int) {
		n := simple(l, i, 1)[0]
		acc, _, err := a.postUntilAnswered(ctx, key+strconv.Itoa(i), n, deadline)
		if err != nil {
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
			return
		}
		l.accept(n.Subject, acc.ID)
	})
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	l.waitAllDelivered(t, s, 2*time.Minute)
	waitDrained(t, s, 30*time.Second)
	l.report(t, s, "store outage", start, 0, fmt.Sprintf("during %s: %d keyed answered 503, %d unkeyed 202; then the keyed ones again, 202", outage.Round(time.Millisecond), refused.Load(), idemTotal-half))
}
