package tests

// Scenarios of the sender's retry design (services/README.md, "Retries,
// pauses and the send rate"): SES failing for a minute, several senders on
// one account quota, a retry window that runs out, and a message that
// crashes the sender.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"herald/services/devstack"
	"herald/services/devstack/sesgate"
)

// flow posts one notification of the ledger every interval until stop is
// closed, numbering them from 0; wait returns how many it posted and the
// first answer that was not 202.
type flow struct {
	stop chan struct{}
	done chan struct{}
	n    int
	err  error
}

func startFlow(l *ledger, a *api, every time.Duration) *flow {
	f := &flow{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(f.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-f.stop:
				return
			case <-t.C:
			}
			n := simple(l, f.n, 1)[0]
			f.n++
			l.post()
			r, err := a.post(context.Background(), n)
			var acc accepted
			if err != nil || r.Status != http.StatusAccepted || json.Unmarshal(r.Body, &acc) != nil || acc.ID == "" {
				if f.err == nil {
					f.err = fmt.Errorf("post %q: %v %s", n.Subject, err, r)
				}
				continue
			}
			l.accept(n.Subject, acc.ID)
		}
	}()
	return f
}

func (f *flow) wait() (int, error) {
	close(f.stop)
	<-f.done
	return f.n, f.err
}

// sendTimes are the gate's accept times of the ledger's sends, in order.
func sendTimes(s *devstack.Stack, l *ledger) []time.Time {
	var out []time.Time
	for _, x := range s.Gate().Sends() {
		if strings.HasPrefix(x.Subject, l.prefix) {
			out = append(out, x.At)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Before(out[j]) })
	return out
}

// logCount counts the sender log lines whose message starts with msg.
func logCount(t *testing.T, s *devstack.Stack, c devstack.Component, msg string) int {
	t.Helper()
	b, err := os.ReadFile(s.LogPath(c))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), `"msg":"`+msg)
}

// SES fails every call for 60 s while notifications keep coming, 10 a
// second: answering 503, throttling, or dropping connections. Nothing may
// be dead-lettered, lost or sent twice; the sender pauses once (one log
// line), probes instead of cycling every message through SES, and delivers
// again within 10 s of the fault's end. Each mode runs on its own pipeline,
// in parallel.
func TestSESFaultsDuringSteadyFlow(t *testing.T) {
	const (
		faultFor  = 60 * time.Second
		before    = 5 * time.Second
		after     = 10 * time.Second
		every     = 100 * time.Millisecond
		maxResume = 10 * time.Second
	)
	for _, mode := range []sesgate.FaultMode{sesgate.FaultUnavailable, sesgate.FaultThrottle, sesgate.FaultRefuse} {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			s := startStack(t, devstack.Config{APIVariables: fastPosting, MetricsInterval: time.Second})
			a := newAPI(s)
			l := newLedger("ses-" + string(mode))
			start := time.Now()
			f := startFlow(l, a, every)
			waitFor(t, 30*time.Second, "the flow delivering", func() (bool, string) {
				n := len(sendTimes(s, l))
				return n >= 20 && time.Since(start) >= before, fmt.Sprintf("%d sent", n)
			})

			// When: SES fails every call for a minute.
			faultAt := time.Now()
			if err := s.Gate().SetFault(sesgate.Fault{Mode: mode, For: sesgate.Duration(faultFor)}); err != nil {
				t.Fatal(err)
			}
			faultEnd := faultAt.Add(faultFor)
			faultedBefore := s.Gate().Stats().Faulted
			_, postedBefore := l.postedAndAccepted()
			waitFor(t, faultFor+30*time.Second, "the fault's end and the flow after it", func() (bool, string) {
				return time.Since(faultEnd) >= after, fmt.Sprintf("%s to go", time.Until(faultEnd.Add(after)).Round(time.Second))
			})
			posted, err := f.wait()
			if err != nil {
				t.Fatal(err)
			}
			_, postedAll := l.postedAndAccepted()
			l.waitAllDelivered(t, s, 3*time.Minute)
			waitDrained(t, s, 30*time.Second)

			// Then: delivery resumed within 10 s of the fault's end.
			var resume time.Duration = -1
			for _, at := range sendTimes(s, l) {
				if at.After(faultEnd) {
					resume = at.Sub(faultEnd)
					break
				}
			}
			faulted := s.Gate().Stats().Faulted - faultedBefore
			var m map[string]float64
			waitFor(t, 10*time.Second, "the sender's metrics", func() (bool, string) {
				m = senderMetrics(t, s)
				return m["PausedTime.sumMs"] > 0, fmt.Sprint(m)
			})
			pauses, resumes := logCount(t, s, devstack.Sender, "sending paused"), logCount(t, s, devstack.Sender, "sending resumed")
			l.report(t, s, "SES "+string(mode)+" 60s", start, 0, fmt.Sprintf(
				"%d posted at 10/s, %d of them from the fault on; SES calls faulted %d; paused %d time(s) for %.1f s in all; delivery resumed %s after the fault's end; throttled %g",
				posted, postedAll-postedBefore, faulted, pauses, m["PausedTime.sumMs"]/1000, resume.Round(time.Millisecond), m["Throttled"]))
			if resume < 0 || resume > maxResume {
				t.Errorf("delivery resumed %s after the fault's end, want within %s", resume, maxResume)
			}
			if pauses != 1 || resumes != 1 {
				t.Errorf("the sender logged %d pauses and %d resumptions, want one each", pauses, resumes)
			}
			// Probing, not cycling: far fewer SES calls than messages that
			// waited out the fault.
			if waited := postedAll - postedBefore; faulted >= int64(waited)/2 {
				t.Errorf("%d SES calls during the fault for %d messages posted meanwhile: the sender did not pause", faulted, waited)
			}
		})
	}
}

// pipelineWithFault starts a pipeline for one scenario with an SES fault
// set from the start.
func pipelineWithFault(t *testing.T, name string, cfg devstack.Config, f sesgate.Fault) (*devstack.Stack, *api, *ledger) {
	t.Helper()
	s := startStack(t, cfg)
	if err := s.Gate().SetFault(f); err != nil {
		t.Fatal(err)
	}
	return s, newAPI(s), newLedger(name)
}

// postOne posts n and records it as accepted, or as doomed (it must end in
// the dead-letter queue); it returns the notification's id.
func postOne(t *testing.T, a *api, l *ledger, n notification, doomed bool) string {
	t.Helper()
	l.post()
	r, err := a.post(context.Background(), n)
	var acc accepted
	if err != nil || r.Status != http.StatusAccepted || json.Unmarshal(r.Body, &acc) != nil || acc.ID == "" {
		t.Fatalf("post %q: %v %s", n.Subject, err, r)
	}
	if doomed {
		l.acceptDoomed(n.Subject, acc.ID)
	} else {
		l.accept(n.Subject, acc.ID)
	}
	return acc.ID
}

// postedAndAccepted is how many notifications the ledger has posted and
// seen accepted.
func (l *ledger) postedAndAccepted() (accepted, posted int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.ids) + len(l.doomed), l.posted
}

// Sender tasks share one SES account quota. Three senders on an account of
// 20 sends/s deliver 1,200 notifications with under 5% of sends throttled
// (each starts at a third of the quota and adapts); one sender alone
// reaches at least 90% of the quota, measured by the gate's timestamps of
// its sends while a backlog waited.
func TestSendersShareTheAccountQuota(t *testing.T) {
	const quota = 20
	for _, tc := range []struct {
		name          string
		senders, mail int
	}{
		{"3 senders", 3, 1200},
		{"1 sender", 1, 600},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := startStack(t, devstack.Config{Senders: tc.senders, MaxSendRate: quota, APIVariables: fastPosting})
			a := newAPI(s)
			l := newLedger(fmt.Sprintf("quota-%d", tc.senders))
			start := time.Now()
			if err := l.postAll(a, 8, simple(l, 0, tc.mail)); err != nil {
				t.Fatal(err)
			}
			posted := time.Since(start)
			l.waitAllDelivered(t, s, time.Duration(tc.mail/quota)*time.Second*3)
			waitDrained(t, s, 30*time.Second)

			st := s.Gate().Stats()
			throttled := float64(st.Throttled) / float64(st.Accepted+st.Throttled)
			times := sendTimes(s, l)
			// From the first send to the last, the queue held a backlog
			// (posting took far less time than sending).
			busy := times[len(times)-1].Sub(times[0])
			rate := float64(len(times)-1) / busy.Seconds()
			l.report(t, s, fmt.Sprintf("%s on a %d/s account", tc.name, quota), start, 0, fmt.Sprintf(
				"posted in %s; SES accepted %d, throttled %d (%.2f%% of sends); achieved %.2f/s = %.1f%% of the quota over %s",
				posted.Round(time.Millisecond), st.Accepted, st.Throttled, 100*throttled, rate, 100*rate/quota, busy.Round(time.Millisecond)))
			if throttled >= 0.05 {
				t.Errorf("%.2f%% of sends throttled, want under 5%%", 100*throttled)
			}
			if posted > busy/4 {
				t.Fatalf("posting took %s of the %s of sending: the backlog was not there all along, the rate proves nothing", posted, busy)
			}
			if tc.senders == 1 && rate < 0.9*quota {
				t.Errorf("one sender reached %.2f/s, want at least 90%% of the %d/s quota", rate, quota)
			}
			if rate > quota*1.05 {
				t.Errorf("%.2f/s is above the %d/s quota", rate, quota)
			}
		})
	}
}

// A retry window that runs out: notifications SES keeps failing (503, for
// their subject only) are retried until the window (8 s here, hours in
// production) has passed since their first attempt, then dead-lettered with
// class expired and a reason naming the attempts, the first attempt's time
// and the last error. (A message may expire after a single attempt: if the
// failures pause sending, it waits, held, for a probe turn that may come
// after its window.) Nothing else is dead-lettered; the others arrive once.
func TestRetryWindowRunsOut(t *testing.T) {
	t.Parallel()
	const window = 8 * time.Second
	const marker = "never deliverable"
	s, a, l := pipelineWithFault(t, "retry-window",
		devstack.Config{APIVariables: fastPosting, SenderVariables: map[string]string{"HERALD_RETRY_WINDOW": window.String()}},
		sesgate.Fault{Mode: sesgate.FaultUnavailable, Subject: marker})
	start := time.Now()
	var ns []notification
	for i := range 30 {
		ns = append(ns, simple(l, i, 1)[0])
		if i%5 == 0 {
			ns = append(ns, notification{To: []string{"x@example.org"}, Subject: fmt.Sprintf("%s%s %d", l.prefix, marker, i), Text: "x"})
		}
	}
	// envelope id -> when its post began: the sender may try it before the
	// API's answer reaches the client, so the window is measured from the
	// request, not the answer.
	postedAt := map[string]time.Time{}
	for _, n := range ns {
		began := time.Now()
		postedAt[postOne(t, a, l, n, strings.Contains(n.Subject, marker))] = began
	}
	// Watch the DLQ: when each doomed message first shows there.
	seen := map[string]time.Time{}
	waitFor(t, 2*time.Minute, "the doomed ones in the DLQ", func() (bool, string) {
		dead, err := s.PeekDeadLetters(context.Background())
		if err != nil {
			return false, err.Error()
		}
		for _, d := range dead {
			var env struct{ ID string }
			if json.Unmarshal([]byte(d.Body), &env) == nil && seen[env.ID].IsZero() {
				seen[env.ID] = time.Now()
			}
		}
		return len(seen) >= 6, fmt.Sprintf("%d dead-lettered", len(seen))
	})
	l.waitAllDelivered(t, s, time.Minute)
	waitDrained(t, s, 30*time.Second)
	var soonest time.Duration = -1
	for id, at := range seen {
		if after := at.Sub(postedAt[id]); soonest < 0 || after < soonest {
			soonest = after
		}
	}
	c := l.report(t, s, "retry window runs out", start, 0, fmt.Sprintf("window %s; SES calls failed for the doomed ones %d; the first dead letter %s after its post; attempts per dead letter %v",
		window, s.Gate().Stats().Faulted, soonest.Round(time.Millisecond), deadAttempts(s)))
	if soonest < window {
		t.Errorf("a message was dead-lettered %s after it was posted, before its %s window could run out", soonest, window)
	}
	for _, d := range c.deadList {
		reason, first := d.Attributes[attrFailureReason], d.Attributes["herald.failure.firstAttempt"]
		if d.Attributes[attrFailureClass] != "expired" || !strings.Contains(reason, "retry window 8s ran out after") ||
			!strings.Contains(reason, "last error: transient: ses ServiceUnavailable") || first == "" || !strings.Contains(reason, first) {
			t.Errorf("dead letter %s: attributes %v", d.MessageID, d.Attributes)
		}
		_, err := time.Parse(time.RFC3339, first)
		if attempts, _ := strconv.Atoi(d.Attributes["herald.failure.attempts"]); err != nil || attempts < 1 {
			t.Errorf("dead letter %s: first attempt %q, %d attempts; want a time and a count", d.MessageID, first, attempts)
		}
	}
}

// deadAttempts are the attempts the dead letters record, sorted.
func deadAttempts(s *devstack.Stack) []int {
	dead, _ := s.PeekDeadLetters(context.Background())
	var out []int
	for _, d := range dead {
		n, _ := strconv.Atoi(d.Attributes["herald.failure.attempts"])
		out = append(out, n)
	}
	sort.Ints(out)
	return out
}

// A message that makes the sender crash every time it holds it still ends
// in the dead-letter queue, through SQS redrive (maxReceiveCount), the
// safety net that ordinary retrying cannot reach. The crash is real: SES
// hangs on that message's send (the gate's hang fault, for its subject
// only) and, while the sender waits for the answer, the test SIGKILLs it and
// starts it again; the held message returns after the visibility timeout.
// After maxReceiveCount (3 here) crashes the SQS emulator moves it to the
// DLQ, without Herald's failure attributes (the sender never decided
// anything). The other notifications are delivered.
func TestCrashingMessageIsRedriven(t *testing.T) {
	t.Parallel()
	const maxReceives = 3
	const marker = "crashes the sender"
	s, a, l := pipelineWithFault(t, "crash",
		devstack.Config{APIVariables: fastPosting, VisibilityTimeout: 3 * time.Second, MaxReceiveCount: maxReceives},
		sesgate.Fault{Mode: sesgate.FaultHang, Subject: marker})
	ctx := context.Background()
	start := time.Now()
	if err := l.postAll(a, 4, simple(l, 0, 20)); err != nil {
		t.Fatal(err)
	}
	poisonID := postOne(t, a, l, notification{To: []string{"x@example.org"}, Subject: l.prefix + marker, Text: "x"}, true)

	inDLQ := func() bool {
		dead, err := s.PeekDeadLetters(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range dead {
			if strings.Contains(d.Body, poisonID) {
				return true
			}
		}
		return false
	}
	kills, inFlight := 0, 0
	for !inDLQ() {
		if kills > maxReceives {
			t.Fatalf("%d crashes and the message is not in the DLQ", kills)
		}
		// The sender holds the message: its send hangs at SES.
		ok, _ := poll(t, 30*time.Second, "the sender holding the message", func() (bool, string) {
			if inDLQ() {
				return true, "redriven"
			}
			return s.Gate().Stats().Hanging > 0, fmt.Sprint(s.Gate().Stats())
		})
		if !ok {
			t.Fatalf("after %d crashes the sender never held the message again", kills)
		}
		if inDLQ() {
			break
		}
		// Kill once the message is all it holds: those received with it
		// finish first (claim, send, record, delete: tens of milliseconds
		// with the state store), so only its receive count grows with the
		// crashes. Within 5 s, well before its hung send times out (10 s).
		poll(t, 5*time.Second, "the others settled", func() (bool, string) {
			d, err := s.QueueDepth(ctx, s.QueueURL())
			return err == nil && d.InFlight <= 1, fmt.Sprintf("%+v %v", d, err)
		})
		if err := s.Kill(devstack.Sender); err != nil {
			t.Fatal(err)
		}
		kills++
		// What the dead sender held (invisible until the 3 s visibility
		// lapses) is all that can be sent twice.
		depth, err := s.QueueDepth(ctx, s.QueueURL())
		if err != nil {
			t.Fatal(err)
		}
		inFlight += max(depth.InFlight-1, 0) // besides the one it crashes on
		// The killed sender's connection is gone before the next one starts.
		waitFor(t, 10*time.Second, "the hung call to end with its sender", func() (bool, string) {
			return s.Gate().Stats().Hanging == 0, fmt.Sprint(s.Gate().Stats())
		})
		if err := s.Restart(ctx, devstack.Sender); err != nil {
			t.Fatal(err)
		}
	}
	l.waitAllDelivered(t, s, time.Minute)
	waitDrained(t, s, 30*time.Second)
	// Messages sent but not yet deleted when the sender died come again.
	c := l.report(t, s, "message crashes the sender", start, inFlight, fmt.Sprintf("SIGKILLed %d times while it held the message (%d others in flight at the kills); maxReceiveCount %d", kills, inFlight, maxReceives))
	if kills != maxReceives {
		t.Errorf("redriven after %d crashes, want maxReceiveCount %d", kills, maxReceives)
	}
	for _, d := range c.deadList {
		if d.Attributes[attrFailureClass] != "" {
			t.Errorf("dead letter %s carries Herald's failure attributes %v: the sender, not SQS redrive, moved it", d.MessageID, d.Attributes)
		}
	}
}
