package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"herald/services/devstack"
	"herald/services/devstack/sesgate"
)

// simple is n plain notifications of the ledger, numbered from offset.
func simple(l *ledger, offset, n int) []notification {
	ns := make([]notification, n)
	for i := range ns {
		ns[i] = notification{To: []string{fmt.Sprintf("user%d@example.org", offset+i)}, Subject: l.subject(offset + i), Text: "x"}
	}
	return ns
}

// SIGKILL of the sender while hundreds of messages are queued and in
// flight, then a restart: none is lost. A message SES accepted but the
// killed sender had not yet deleted is sent again (at-least-once): such
// duplicates are counted, printed, and bounded by the messages the sender
// held when it died.
func TestSenderKilled(t *testing.T) {
	const total = 400
	s := startStack(t, devstack.Config{
		// Messages the killed sender held come back after this.
		VisibilityTimeout: 5 * time.Second,
		// Slow enough that hundreds are still queued or in flight at the kill.
		MaxSendRate:  100,
		APIVariables: fastPosting,
	})
	a := newAPI(s)
	ctx := context.Background()
	l := newLedger("sender-sigkill")
	start := time.Now()
	if err := l.postAll(a, 8, simple(l, 0, total)); err != nil {
		t.Fatal(err)
	}
	posted := time.Since(start)

	waitFor(t, 30*time.Second, "first sends", func() (bool, string) {
		_, n := delivered(s, l.prefix)
		return n >= 30, fmt.Sprintf("%d sent", n)
	})
	if err := s.Kill(devstack.Sender); err != nil {
		t.Fatal(err)
	}
	_, atKill := delivered(s, l.prefix)
	depth, err := s.QueueDepth(ctx, s.QueueURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("killed the sender (SIGKILL) with %d sent, queue %d visible + %d in flight", atKill, depth.Visible, depth.InFlight)
	if atKill >= total || depth.InFlight == 0 {
		t.Fatalf("the kill hit no message in flight (%d of %d sent, %d in flight): the scenario proves nothing", atKill, total, depth.InFlight)
	}

	if err := s.Restart(ctx, devstack.Sender); err != nil {
		t.Fatal(err)
	}
	l.waitAllDelivered(t, s, 2*time.Minute)
	waitDrained(t, s, 30*time.Second)
	l.report(t, s, "sender SIGKILL", start, depth.InFlight,
		fmt.Sprintf("posted in %s; killed with %d sent, %d in flight", posted.Round(time.Millisecond), atKill, depth.InFlight))
}

// SIGTERM to the sender during a burst: it stops receiving, finishes the
// sends in flight and deletes them, hands back at once what it received but
// had not started, and exits 0. Right after it exits nothing is in flight:
// every message is either sent or visible again (the queue's visibility
// timeout is 10 s, so a message not handed back would still be hidden).
// After a restart all are delivered, none twice.
func TestSenderSIGTERMDrains(t *testing.T) {
	const total = 300
	s := startStack(t, devstack.Config{VisibilityTimeout: 10 * time.Second, MaxSendRate: 50, APIVariables: fastPosting})
	a := newAPI(s)
	ctx := context.Background()
	l := newLedger("sender-sigterm")
	start := time.Now()
	if err := l.postAll(a, 8, simple(l, 0, total)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "first sends", func() (bool, string) {
		_, n := delivered(s, l.prefix)
		return n >= 40, fmt.Sprintf("%d sent", n)
	})

	stopAt := time.Now()
	if err := s.Stop(devstack.Sender); err != nil {
		t.Fatalf("the sender did not drain and exit cleanly on SIGTERM: %v", err)
	}
	drain := time.Since(stopAt)
	c, err := l.count(s, false)
	if err != nil {
		t.Fatal(err)
	}
	depth, err := s.QueueDepth(ctx, s.QueueURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("SIGTERM: exited after %s with %d sent, queue %d visible + %d in flight", drain.Round(time.Millisecond), c.delivered, depth.Visible, depth.InFlight)
	if c.delivered >= total {
		t.Fatalf("all %d were sent before the SIGTERM: the scenario proves nothing", total)
	}
	if depth.InFlight != 0 {
		t.Errorf("%d messages still in flight after the drain: received, neither sent nor handed back", depth.InFlight)
	}
	if c.delivered+depth.Visible != total || c.duplicates != 0 {
		t.Errorf("after the drain %d sent + %d visible = %d, want exactly the %d accepted (duplicates %d)",
			c.delivered, depth.Visible, c.delivered+depth.Visible, total, c.duplicates)
	}
	if b, err := os.ReadFile(s.LogPath(devstack.Sender)); err != nil || !strings.Contains(string(b), `"msg":"drained"`) {
		t.Errorf("the sender's log does not say it drained (%v)", err)
	}

	if err := s.Restart(ctx, devstack.Sender); err != nil {
		t.Fatal(err)
	}
	l.waitAllDelivered(t, s, 60*time.Second)
	waitDrained(t, s, 30*time.Second)
	l.report(t, s, "sender SIGTERM", start, 0,
		fmt.Sprintf("SIGTERM with %d sent, drained in %s leaving %d visible and %d in flight", c.delivered, drain.Round(time.Millisecond), depth.Visible, depth.InFlight))
}

// SES unavailable for a while is transient: the sender pauses, probes and,
// once SES answers again, delivers every notification exactly once; none is
// dead-lettered. First the real SES emulator process is killed and
// restarted (the gate answers 502 meanwhile); then the gate's fault switch
// makes SES answer 503 and 429.
func TestSESOutage(t *testing.T) {
	s := startStack(t, devstack.Config{MaxSendRate: 50, APIVariables: fastPosting})
	a := newAPI(s)
	ctx := context.Background()

	t.Run("emulator killed", func(t *testing.T) {
		const total = 120
		l := newLedger("ses-killed")
		start := time.Now()
		if err := l.postAll(a, 8, simple(l, 0, total)); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 30*time.Second, "first sends", func() (bool, string) {
			_, n := delivered(s, l.prefix)
			return n >= 20, fmt.Sprintf("%d sent", n)
		})
		// The emulator's store dies with it: keep what it held.
		before, err := s.Emails(ctx)
		if err != nil {
			t.Fatal(err)
		}
		refusedBefore := s.Gate().Stats().UpstreamErrors
		// Counted before the kill: the sender may pause within milliseconds
		// of it (32 sends in flight failing at once).
		pausedBefore := logCount(t, s, devstack.Sender, "sending paused")
		if err := s.Kill(devstack.SES); err != nil {
			t.Fatal(err)
		}
		killedAt := time.Now()
		_, atKill := delivered(s, l.prefix)
		// Down for 2 s at least, and until the sender has met the outage
		// and paused sending (it then probes instead of trying every message).
		waitFor(t, 30*time.Second, "the sender pausing while SES is down", func() (bool, string) {
			n := s.Gate().Stats().UpstreamErrors - refusedBefore
			paused := logCount(t, s, devstack.Sender, "sending paused") > pausedBefore
			return paused && time.Since(killedAt) >= 2*time.Second, fmt.Sprintf("%d refused, paused %v", n, paused)
		})
		if _, n := delivered(s, l.prefix); n != atKill {
			t.Fatalf("%d sends recorded while the SES emulator was down", n-atKill)
		}
		refused := s.Gate().Stats().UpstreamErrors - refusedBefore
		down := time.Since(killedAt)
		if err := s.Restart(ctx, devstack.SES); err != nil {
			t.Fatal(err)
		}
		restartedAt := time.Now()
		l.waitAllDelivered(t, s, 90*time.Second)
		waitDrained(t, s, 30*time.Second)
		c := l.report(t, s, "SES emulator killed", start, 0,
			fmt.Sprintf("SES down %s with %d sent, %d sends refused (502) meanwhile", down.Round(time.Millisecond), atKill, refused))
		if c.delivered <= atKill {
			t.Errorf("nothing was delivered after the restart")
		}

		// The stores before the kill and after the restart hold only sends
		// the gate recorded, and the new store every send since the restart.
		after, err := s.Emails(ctx)
		if err != nil {
			t.Fatal(err)
		}
		recorded := map[string]sesgate.Send{}
		for _, x := range s.Gate().Sends() {
			recorded[x.MessageID] = x
		}
		inAfter := map[string]bool{}
		for _, m := range after {
			inAfter[m.MessageID] = true
		}
		for _, m := range append(before, after...) {
			if _, ok := recorded[m.MessageID]; !ok {
				t.Errorf("the SES store holds %s (%q), which the gate never recorded", m.MessageID, m.Subject)
			}
		}
		for id, x := range recorded {
			if x.At.After(restartedAt) && !inAfter[id] {
				t.Errorf("send %s (%q) recorded after the restart is not in the SES store", id, x.Subject)
			}
		}
	})

	t.Run("SES answers 503 then 429", func(t *testing.T) {
		const total = 10
		l := newLedger("ses-faults")
		start := time.Now()
		faulted := s.Gate().Stats().Faulted
		// Given: SES answers the next 6 calls with 503 (enough to pause the
		// sender, and one probe), then throttles 3 more (probes too).
		if err := s.Gate().SetFault(sesgate.Fault{Mode: sesgate.FaultUnavailable, Count: 6}); err != nil {
			t.Fatal(err)
		}
		if err := l.postAll(a, 2, simple(l, 0, total)); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 30*time.Second, "the sender to meet the 503s", func() (bool, string) {
			st := s.Gate().Stats()
			return st.Faulted-faulted >= 6, fmt.Sprintf("%+v", st)
		})
		if err := s.Gate().SetFault(sesgate.Fault{Mode: sesgate.FaultThrottle, Count: 3}); err != nil {
			t.Fatal(err)
		}
		// Then: all are delivered, exactly once, and nothing is dead-lettered.
		l.waitAllDelivered(t, s, 60*time.Second)
		waitDrained(t, s, 30*time.Second)
		l.report(t, s, "SES 503/429", start, 0, fmt.Sprintf("SES calls faulted %d", s.Gate().Stats().Faulted-faulted))
	})
}

// Stopping the SQS emulator makes the API answer 503 with Retry-After,
// never 202, and report itself not ready; after a restart it accepts again
// and the sender, which kept polling with backoff, delivers. The emulator
// keeps its queues in memory (SQS does not lose them), so the outage starts
// with the queue drained: what it loses is the emulator's, not Herald's.
func TestSQSOutage(t *testing.T) {
	s := startStack(t, devstack.Config{})
	a := newAPI(s)
	ctx := context.Background()
	l := newLedger("sqs-outage")
	start := time.Now()
	if err := l.postAll(a, 2, simple(l, 0, 5)); err != nil {
		t.Fatal(err)
	}
	l.waitAllDelivered(t, s, 30*time.Second)
	waitDrained(t, s, 10*time.Second)

	if err := s.Stop(devstack.SQS); err != nil {
		t.Fatal(err)
	}
	outage := time.Now()
	codes := map[int]int{}
	retryAfter := func(r reply) {
		if r.Header.Get("Retry-After") == "" {
			t.Errorf("%d without Retry-After", r.Status)
		}
	}
	const tries = 10
	for i := range tries {
		r, err := a.post(ctx, notification{To: []string{"a@example.org"}, Subject: fmt.Sprintf("%sduring-%d", l.prefix, i), Text: "x"})
		if err != nil {
			t.Fatalf("post during the outage: %v", err)
		}
		codes[r.Status]++
		if r.Status != http.StatusServiceUnavailable {
			t.Fatalf("post during the outage: %s, want 503 (never 202)", r)
		}
		retryAfter(r)
	}
	r, err := a.postBatch(ctx, simple(&ledger{prefix: l.prefix + "during-batch-"}, 0, 3))
	if err != nil {
		t.Fatal(err)
	}
	var br batchReply
	codes[r.Status]++
	if r.Status != http.StatusServiceUnavailable || json.Unmarshal(r.Body, &br) != nil || br.Accepted != 0 || len(br.Results) != 3 {
		t.Fatalf("batch during the outage: %s, want 503 with nothing accepted", r)
	}
	for _, res := range br.Results {
		if res.Status != http.StatusServiceUnavailable || res.ID != "" {
			t.Errorf("batch item during the outage: %+v, want 503 without an id", res)
		}
	}
	retryAfter(r)
	answered := time.Since(outage)
	waitFor(t, 15*time.Second, "API reports not ready", func() (bool, string) {
		resp, err := s.HTTPClient().Get(s.APIURL() + "/readyz")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusServiceUnavailable, resp.Status
	})

	if err := s.Restart(ctx, devstack.SQS); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	try := 0
	waitFor(t, 30*time.Second, "API accepts again", func() (bool, string) {
		try++
		n := notification{To: []string{"a@example.org"}, Subject: fmt.Sprintf("%sretry-%d", l.prefix, try), Text: "x"}
		r, err := a.post(ctx, n)
		if err != nil {
			return false, err.Error()
		}
		var acc accepted
		switch {
		case r.Status == http.StatusAccepted && json.Unmarshal(r.Body, &acc) == nil:
			l.accept(n.Subject, acc.ID)
			return true, ""
		case r.Status != http.StatusServiceUnavailable:
			t.Fatalf("post after the restart: %s, want 202 or (while recovering) 503", r)
		}
		return false, r.String()
	})
	recovered := time.Since(restarted)
	if err := l.postAll(a, 2, simple(l, 5, 5)); err != nil {
		t.Fatal(err)
	}
	l.waitAllDelivered(t, s, 60*time.Second)
	waitDrained(t, s, 10*time.Second)
	l.report(t, s, "SQS outage", start, 0, fmt.Sprintf("%d posts during the outage -> %v (no 202) in %s; API accepting %s after the restart; delivered again %s after it",
		tries+1, codes, answered.Round(time.Millisecond), recovered.Round(time.Millisecond), time.Since(restarted).Round(time.Millisecond)))
}
