package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"herald/services/devstack"
	"herald/services/devstack/sesgate"
)

// A notification posted to the API arrives in the SES emulator's store with
// the right sender, recipients, subject and bodies.
func TestNotificationArrives(t *testing.T) {
	s := startStack(t, devstack.Config{})
	a := newAPI(s)
	ctx := context.Background()
	start := time.Now()

	subject := "arrives " + runID()
	n := notification{
		To:      []string{"alice@example.org", "Bob <bob@example.org>"},
		Cc:      []string{"carol@example.org"},
		Bcc:     []string{"dave@example.org"},
		ReplyTo: "support@example.com",
		Subject: subject,
		Text:    "plain body ✓",
		HTML:    "<p>html body ✓</p>",
	}
	r, err := a.post(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	var acc accepted
	if r.Status != http.StatusAccepted || json.Unmarshal(r.Body, &acc) != nil || acc.ID == "" || acc.Status != "queued" {
		t.Fatalf("post: %s, want 202 {id, status: queued}", r)
	}

	var got devstack.Email
	waitFor(t, 30*time.Second, "mail in the SES store", func() (bool, string) {
		mails, err := s.Emails(ctx)
		if err != nil {
			return false, err.Error()
		}
		for _, m := range mails {
			if m.Subject == subject {
				got = m
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d mails, none with the subject", len(mails))
	})
	if bareAddress(got.From) != s.Config().DefaultFrom {
		t.Errorf("from %q, want the default sender %s", got.From, s.Config().DefaultFrom)
	}
	bare := func(list []string) []string {
		out := make([]string, len(list))
		for i, a := range list {
			out[i] = bareAddress(a)
		}
		sort.Strings(out)
		return out
	}
	if to := bare(got.Destination.To); !slices.Equal(to, []string{"alice@example.org", "bob@example.org"}) {
		t.Errorf("to %q", got.Destination.To)
	}
	if cc := bare(got.Destination.Cc); !slices.Equal(cc, []string{"carol@example.org"}) {
		t.Errorf("cc %q", got.Destination.Cc)
	}
	if bcc := bare(got.Destination.Bcc); !slices.Equal(bcc, []string{"dave@example.org"}) {
		t.Errorf("bcc %q", got.Destination.Bcc)
	}
	if rt := bare(got.ReplyTo); !slices.Equal(rt, []string{"support@example.com"}) {
		t.Errorf("replyTo %q", got.ReplyTo)
	}
	if got.Body.Text != n.Text || got.Body.HTML != n.HTML {
		t.Errorf("bodies %q / %q, want %q / %q", got.Body.Text, got.Body.HTML, n.Text, n.HTML)
	}
	if d, err := s.QueueDepth(ctx, s.QueueURL()); err != nil || d.Total() != 0 {
		waitFor(t, 10*time.Second, "queue drained", func() (bool, string) {
			d, err := s.QueueDepth(ctx, s.QueueURL())
			return err == nil && d.Total() == 0, fmt.Sprintf("%+v %v", d, err)
		})
	}
	t.Logf("figures: sent 1, delivered 1, duplicates 0, lost 0, elapsed %s", time.Since(start).Round(time.Millisecond))

	// A batch with one bad notification: 207, a result per item, and the
	// good ones delivered.
	batchStart := time.Now()
	prefix := "batch " + runID() + " #"
	r, err = a.postBatch(ctx, []notification{
		{To: []string{"erin@example.org"}, Subject: prefix + "0", Text: "first"},
		{To: []string{"frank@example.org"}, Subject: prefix + "1"}, // no body
		{To: []string{"grace@example.org"}, Subject: prefix + "2", HTML: "<p>third</p>"},
	})
	if err != nil {
		t.Fatal(err)
	}
	var br batchReply
	if err := json.Unmarshal(r.Body, &br); err != nil || r.Status != http.StatusMultiStatus || br.Accepted != 2 || br.Rejected != 1 || len(br.Results) != 3 {
		t.Fatalf("batch: %s, want 207 with 2 accepted and 1 rejected", r)
	}
	for i, want := range []int{http.StatusAccepted, http.StatusBadRequest, http.StatusAccepted} {
		if res := br.Results[i]; res.Index != i || res.Status != want || (want == http.StatusAccepted) != (res.ID != "") {
			t.Errorf("batch result %d: %+v, want status %d", i, res, want)
		}
	}
	waitFor(t, 30*time.Second, "batch delivered", func() (bool, string) {
		per, _ := delivered(s, prefix)
		return per[prefix+"0"] == 1 && per[prefix+"2"] == 1, fmt.Sprint(per)
	})
	if per, _ := delivered(s, prefix); per[prefix+"1"] != 0 || len(per) != 2 {
		t.Errorf("delivered %v, want exactly the two valid ones", per)
	}
	t.Logf("figures: batch of 3, accepted 2, rejected 1, delivered 2, elapsed %s", time.Since(batchStart).Round(time.Millisecond))
}

// A permanent failure (a From the API allows but SES has not verified)
// lands in the dead-letter queue with its reason, and is not retried.
func TestPermanentFailureDeadLettered(t *testing.T) {
	s := startStack(t, devstack.Config{})
	a := newAPI(s)
	ctx := context.Background()
	start := time.Now()

	subject := "unverified " + runID()
	r, err := a.post(ctx, notification{From: "alerts@example.net", To: []string{"alice@example.org"}, Subject: subject, Text: "never sent"})
	if err != nil {
		t.Fatal(err)
	}
	var acc accepted
	if r.Status != http.StatusAccepted || json.Unmarshal(r.Body, &acc) != nil {
		t.Fatalf("post from an allowed but unverified sender: %s, want 202", r)
	}

	var dead []devstack.DeadLetter
	waitFor(t, 30*time.Second, "message in the DLQ", func() (bool, string) {
		var err error
		dead, err = s.PeekDeadLetters(ctx)
		return err == nil && len(dead) > 0, fmt.Sprintf("%d dead letters, %v", len(dead), err)
	})
	if len(dead) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dead))
	}
	d := dead[0]
	var env struct{ ID, Subject string }
	if err := json.Unmarshal([]byte(d.Body), &env); err != nil {
		t.Fatalf("dead letter body is not the envelope: %v: %q", err, d.Body)
	}
	if env.ID != acc.ID || env.Subject != subject {
		t.Errorf("dead letter is %s %q, want %s %q", env.ID, env.Subject, acc.ID, subject)
	}
	class, reason := d.Attributes[attrFailureClass], d.Attributes[attrFailureReason]
	if class == "" || reason == "" || d.Attributes[attrSourceMessageID] == "" {
		t.Fatalf("dead letter attributes %v lack %s, %s or %s", d.Attributes, attrFailureClass, attrFailureReason, attrSourceMessageID)
	}
	if !strings.Contains(reason, "not verified") && !strings.Contains(reason, "MessageRejected") {
		t.Errorf("reason %q does not say SES rejected the unverified sender", reason)
	}
	// Sent to the DLQ at once: SES saw exactly one attempt, and the main
	// queue let go of it.
	if st := s.Gate().Stats(); st.Rejected != 1 || st.Accepted != 0 {
		t.Errorf("gate stats %+v, want exactly one rejected attempt", st)
	}
	waitFor(t, 10*time.Second, "main queue empty", func() (bool, string) {
		d, err := s.QueueDepth(ctx, s.QueueURL())
		return err == nil && d.Total() == 0, fmt.Sprintf("%+v %v", d, err)
	})
	t.Logf("figures: sent 1, dead-lettered 1 (class %q, reason %q), elapsed %s", class, reason, time.Since(start).Round(time.Millisecond))
}

// SIGKILL of the sender while hundreds of messages are in flight, then a
// restart: none is lost. Duplicates (sent by SES, killed before the delete)
// are possible with at-least-once delivery; they are counted and printed.
func TestSenderKilledInFlightLosesNothing(t *testing.T) {
	const total = 400
	s := startStack(t, devstack.Config{
		// Messages the killed sender held come back after this.
		VisibilityTimeout: 5 * time.Second,
		// Slow enough that hundreds are still queued or in flight at the kill.
		MaxSendRate: 100,
		// The posts come faster than the default per-key rate.
		APIEnv: map[string]string{"HERALD_RATE_LIMIT": "10000", "HERALD_RATE_BURST": "10000"},
	})
	a := newAPI(s)
	ctx := context.Background()
	prefix := "kill " + runID() + " #"
	start := time.Now()

	// Post from 8 clients at once.
	var next atomic.Int64
	var failed atomic.Int64
	var wg sync.WaitGroup
	var firstErr atomic.Value
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > total {
					return
				}
				r, err := a.post(ctx, notification{To: []string{fmt.Sprintf("user%d@example.org", i)}, Subject: fmt.Sprintf("%s%d", prefix, i), Text: "x"})
				if err != nil || r.Status != http.StatusAccepted {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("%v %s", err, r))
				}
			}
		}()
	}
	wg.Wait()
	if failed.Load() > 0 {
		t.Fatalf("%d of %d posts not accepted; first: %v", failed.Load(), total, firstErr.Load())
	}
	posted := time.Since(start)

	// Kill the sender once some are sent and most are not.
	waitFor(t, 30*time.Second, "first sends", func() (bool, string) {
		_, n := delivered(s, prefix)
		return n >= 30, fmt.Sprintf("%d sent", n)
	})
	if err := s.Kill(devstack.Sender); err != nil {
		t.Fatal(err)
	}
	_, atKill := delivered(s, prefix)
	depth, _ := s.QueueDepth(ctx, s.QueueURL())
	t.Logf("killed the sender (SIGKILL) with %d sent, queue %d visible + %d in flight", atKill, depth.Visible, depth.InFlight)
	if atKill >= total {
		t.Fatalf("all %d were sent before the kill: nothing was in flight", total)
	}

	if err := s.Restart(ctx, devstack.Sender); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Minute, "every notification delivered", func() (bool, string) {
		per, _ := delivered(s, prefix)
		return len(per) == total, fmt.Sprintf("%d of %d distinct delivered", len(per), total)
	})
	waitFor(t, 30*time.Second, "queue drained", func() (bool, string) {
		d, err := s.QueueDepth(ctx, s.QueueURL())
		return err == nil && d.Total() == 0, fmt.Sprintf("%+v %v", d, err)
	})
	per, sends := delivered(s, prefix)
	var dups []string
	for subj, n := range per {
		if n > 1 {
			dups = append(dups, fmt.Sprintf("%q x%d", subj, n))
		}
	}
	sort.Strings(dups)
	lost := total - len(per)
	dead, err := s.PeekDeadLetters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("figures: posted %d (in %s), sent %d, distinct %d, duplicates %d, lost %d, dead-lettered %d, elapsed %s",
		total, posted.Round(time.Millisecond), sends, len(per), sends-len(per), lost, len(dead), time.Since(start).Round(time.Millisecond))
	if len(dups) > 0 {
		t.Logf("duplicates: %s", strings.Join(dups, ", "))
	}
	if lost != 0 {
		t.Fatalf("%d notifications lost", lost)
	}
	if len(dead) != 0 {
		t.Errorf("%d notifications dead-lettered; a kill is not a permanent failure", len(dead))
	}
}

// Stopping the SQS emulator makes the API answer 503 with Retry-After, never
// 202; after a restart it accepts again and the pipeline delivers.
func TestSQSOutage(t *testing.T) {
	s := startStack(t, devstack.Config{})
	a := newAPI(s)
	ctx := context.Background()
	id := runID()
	if r, err := a.post(ctx, notification{To: []string{"a@example.org"}, Subject: "before outage " + id, Text: "x"}); err != nil || r.Status != http.StatusAccepted {
		t.Fatalf("post before the outage: %v %s", err, r)
	}

	if err := s.Stop(devstack.SQS); err != nil {
		t.Fatal(err)
	}
	outage := time.Now()
	const tries = 10
	codes := map[int]int{}
	for i := 0; i < tries; i++ {
		r, err := a.post(ctx, notification{To: []string{"a@example.org"}, Subject: fmt.Sprintf("during outage %s %d", id, i), Text: "x"})
		if err != nil {
			t.Fatalf("post during the outage: %v", err)
		}
		codes[r.Status]++
		if r.Status == http.StatusAccepted {
			t.Fatalf("202 with SQS down: %s", r)
		}
		if r.Status != http.StatusServiceUnavailable {
			t.Fatalf("post during the outage: %s, want 503", r)
		}
		if r.Header.Get("Retry-After") == "" {
			t.Errorf("503 without Retry-After")
		}
	}
	answered := time.Since(outage)

	if err := s.Restart(ctx, devstack.SQS); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	subject := "after outage " + id
	waitFor(t, 30*time.Second, "API accepts again", func() (bool, string) {
		r, err := a.post(ctx, notification{To: []string{"a@example.org"}, Subject: subject, Text: "x"})
		if err != nil {
			return false, err.Error()
		}
		if r.Status != http.StatusAccepted && r.Status != http.StatusServiceUnavailable {
			t.Fatalf("post after the restart: %s, want 202 or (while recovering) 503", r)
		}
		return r.Status == http.StatusAccepted, r.String()
	})
	recovered := time.Since(restarted)
	waitFor(t, 60*time.Second, "mail posted after the restart delivered", func() (bool, string) {
		per, _ := delivered(s, subject)
		return len(per) > 0, "not yet"
	})
	t.Logf("figures: %d posts during the outage -> %v (no 202) in %s; API accepting %s after the restart; delivery resumed after %s",
		tries, codes, answered.Round(time.Millisecond), recovered.Round(time.Millisecond), time.Since(restarted).Round(time.Millisecond))
}

// SES failing for a while (503, then throttling) is transient: the sender
// retries with backoff and every notification is delivered once SES answers
// again; none is dead-lettered.
func TestSESOutageRetried(t *testing.T) {
	s := startStack(t, devstack.Config{})
	a := newAPI(s)
	ctx := context.Background()
	const total = 10
	prefix := "ses outage " + runID() + " #"
	start := time.Now()

	// Given: SES answers the next 20 calls with 503, then throttles 5 more.
	if err := s.Gate().SetFault(sesgate.Fault{Mode: sesgate.FaultUnavailable, Count: 20}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < total; i++ {
		if r, err := a.post(ctx, notification{To: []string{"a@example.org"}, Subject: fmt.Sprintf("%s%d", prefix, i), Text: "x"}); err != nil || r.Status != http.StatusAccepted {
			t.Fatalf("post %d: %v %s", i, err, r)
		}
	}
	waitFor(t, 30*time.Second, "the sender to meet the 503s", func() (bool, string) {
		st := s.Gate().Stats()
		return st.Faulted >= 20, fmt.Sprintf("%+v", st)
	})
	if err := s.Gate().SetFault(sesgate.Fault{Mode: sesgate.FaultThrottle, Count: 5}); err != nil {
		t.Fatal(err)
	}

	// Then: all are delivered, exactly once, and nothing is dead-lettered.
	waitFor(t, 60*time.Second, "every notification delivered", func() (bool, string) {
		per, _ := delivered(s, prefix)
		return len(per) == total, fmt.Sprintf("%d of %d", len(per), total)
	})
	per, sends := delivered(s, prefix)
	dead, err := s.PeekDeadLetters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st := s.Gate().Stats()
	t.Logf("figures: sent %d, delivered %d, duplicates %d, lost %d, dead-lettered %d, SES calls faulted %d, elapsed %s",
		total, len(per), sends-len(per), total-len(per), len(dead), st.Faulted, time.Since(start).Round(time.Millisecond))
	if len(dead) != 0 {
		t.Errorf("%d dead-lettered: a 503 or a throttle is not permanent", len(dead))
	}
	if sends != total {
		t.Errorf("%d sends for %d notifications", sends, total)
	}
}
