package tests

// Scenarios of the sender's deduplication by notification id (issue 11;
// services/internal/store/DESIGN.md): senders SIGKILLed again and again
// while mail flows, and the state store down for 20 s.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"herald/services/contract"
	"herald/services/devstack"
	"herald/services/devstack/dynamolocal"
)

// sendsPerID counts the gate's accepted sends of the ledger per
// notification id (the send's herald-id tag): the mails per notification
// SES took, whatever the subject.
func sendsPerID(s *devstack.Stack, l *ledger) (perID map[string]int, untagged int) {
	perID = map[string]int{}
	for _, x := range s.Gate().Sends() {
		if !strings.HasPrefix(x.Subject, l.prefix) {
			continue
		}
		if id := x.Tags[contract.SESNotificationTag]; id != "" {
			perID[id]++
		} else {
			untagged++
		}
	}
	return perID, untagged
}

// sumMetrics adds up the EMF counters of the stack's senders.
func sumMetrics(t *testing.T, s *devstack.Stack) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, c := range s.Components() {
		if devstack.IsSender(c) {
			for k, v := range senderMetricsOf(t, s, c) {
				out[k] += v
			}
		}
	}
	return out
}

// Two senders share the queue while 3,000 notifications flow; one of them
// is SIGKILLed every 10 s (in turn) and restarted at once. A message a
// killed sender held comes back after the visibility timeout (6 s) and is
// claimed again: if the store has it sent (MarkSent landed, or SES's Send
// event reached the other sender's feedback consumer first), it is deleted
// unsent. Lost must be 0. The duplicates left are the sends SES accepted
// whose record neither the killed sender (MarkSent) nor the feedback (the
// Send event) wrote before the redelivery was claimed: a window of a few
// milliseconds per send in flight at each kill (DESIGN.md, "The duplicate
// window that remains"). They are counted per notification id in the SES
// gate's sends and bounded by what at-least-once without the store would
// allow: every message in flight at each kill.
func TestSendersKilledEvery10s(t *testing.T) {
	const (
		total = 3000
		every = 10 * time.Second
	)
	s := startStack(t, devstack.Config{
		Senders:           2,
		VisibilityTimeout: 6 * time.Second,
		// About 50 s of sending: five kills or more while mail flows.
		MaxSendRate:  60,
		APIVariables: fastPosting,
	})
	a := newAPI(s)
	ctx := context.Background()
	l := newLedger("senders-sigkill")
	start := time.Now()
	posting := make(chan error, 1)
	go func() { posting <- l.postAll(a, 8, simple(l, 0, total)) }()

	var kills, hit, inFlightAtKills int
	var killLog []string
	deadline := time.Now().Add(6 * time.Minute)
	for i := 0; time.Now().Before(deadline); i++ {
		done, _ := poll(t, every, "every notification delivered", func() (bool, string) {
			c, err := l.count(s, false)
			return err == nil && l.len() == total && c.lost == 0, fmt.Sprintf("%d of %d delivered", c.delivered, l.len())
		})
		if done {
			break
		}
		victim := devstack.SenderN(i%2 + 1)
		depth, err := s.QueueDepth(ctx, s.QueueURL())
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Kill(victim); err != nil {
			t.Fatal(err)
		}
		_, sent := delivered(s, l.prefix)
		kills++
		inFlightAtKills += depth.InFlight
		if depth.InFlight > 0 {
			hit++
		}
		killLog = append(killLog, fmt.Sprintf("%s@%ds:%d/%d", victim, int(time.Since(start).Seconds()), sent, depth.InFlight))
		if err := s.Restart(ctx, victim); err != nil {
			t.Fatal(err)
		}
	}
	if err := <-posting; err != nil {
		t.Fatal(err)
	}
	if hit < 3 {
		t.Fatalf("only %d of %d kills found messages in flight: the scenario proves little (%s)", hit, kills, strings.Join(killLog, " "))
	}
	l.waitAllDelivered(t, s, 2*time.Minute)
	waitDrained(t, s, time.Minute)

	perID, untagged := sendsPerID(s, l)
	twice := 0
	for _, n := range perID {
		twice += max(n-1, 0)
	}
	m := sumMetrics(t, s)
	c := l.report(t, s, "senders SIGKILL every 10s", start, inFlightAtKills, fmt.Sprintf(
		"2 senders, %d kills (%d with messages in flight, %d in flight in all; sender@s:sent/in-flight %s); mails per notification id: %d ids, %d extra; ClaimTakeovers %g, AlreadySent %g, DuplicateSends (SES Send events) %g",
		kills, hit, inFlightAtKills, strings.Join(killLog, " "), len(perID), twice,
		m["ClaimTakeovers"], m["AlreadySent"], m["DuplicateSends"]))
	if untagged != 0 || len(perID) != total || twice != c.duplicates {
		t.Errorf("by notification id: %d ids, %d extra, %d untagged sends; by subject %d delivered, %d duplicates", len(perID), twice, untagged, c.delivered, c.duplicates)
	}
	if m["AlreadySent"] == 0 {
		t.Error("no redelivered message was found already sent: the kills exercised no deduplication")
	}
}

// senderHealth is the sender's health answer.
type senderHealth struct {
	code                      int
	Status, Sending, PausedBy string
}

func getSenderHealth(s *devstack.Stack) (senderHealth, error) {
	resp, err := s.HTTPClient().Get(s.SenderURL() + "/healthz")
	if err != nil {
		return senderHealth{}, err
	}
	defer resp.Body.Close()
	h := senderHealth{code: resp.StatusCode}
	return h, json.NewDecoder(resp.Body).Decode(&h)
}

// The state store fails every call for 20 s while notifications keep
// coming, 10 a second. The sender pauses: it sends nothing it could not
// claim, dead-letters nothing, stays healthy (ECS must not replace tasks
// for a dependency's outage) and says it is paused and why; it resumes
// when the store is back. Every notification is then delivered once.
func TestStoreOutageSenderPauses(t *testing.T) {
	const outage = 20 * time.Second
	s := startStack(t, devstack.Config{APIVariables: fastPosting})
	a := newAPI(s)
	l := newLedger("store-outage")
	start := time.Now()
	f := startFlow(l, a, 100*time.Millisecond)
	waitFor(t, 30*time.Second, "first sends", func() (bool, string) {
		_, n := delivered(s, l.prefix)
		return n >= 20, fmt.Sprintf("%d sent", n)
	})

	faultAt := time.Now()
	if err := s.Dynamo().SetFault(dynamolocal.FaultUnavailable, outage); err != nil {
		t.Fatal(err)
	}
	faultEnd := faultAt.Add(outage)
	waitFor(t, 15*time.Second, "the sender paused for the store, healthy", func() (bool, string) {
		h, err := getSenderHealth(s)
		return err == nil && h.code == http.StatusOK && h.Sending == "paused" && strings.Contains(h.PausedBy, "state store"), fmt.Sprintf("%+v %v", h, err)
	})
	pausedAfter := time.Since(faultAt)
	// Healthy all along the outage, and paused until it ends.
	waitFor(t, outage+15*time.Second, "the outage over", func() (bool, string) {
		h, err := getSenderHealth(s)
		if err != nil || h.code != http.StatusOK {
			t.Fatalf("the sender's health during the store outage: %+v %v", h, err)
		}
		return time.Now().After(faultEnd), h.Sending
	})
	waitFor(t, 30*time.Second, "sending resumed", func() (bool, string) {
		h, err := getSenderHealth(s)
		return err == nil && h.Sending == "on", fmt.Sprintf("%+v %v", h, err)
	})
	// More mail after the outage, then the flow stops.
	waitFor(t, 30*time.Second, "sends after the outage", func() (bool, string) {
		n := 0
		for _, at := range sendTimes(s, l) {
			if at.After(faultEnd) {
				n++
			}
		}
		return n >= 20, fmt.Sprintf("%d sent after", n)
	})
	posted, err := f.wait()
	if err != nil {
		t.Fatalf("the API refused a notification during the store outage (it does not need the store without a key): %v", err)
	}
	l.waitAllDelivered(t, s, 2*time.Minute)
	waitDrained(t, s, time.Minute)

	// A send claimed just before the fault may finish in its first
	// seconds (a slow SES emulator on a loaded machine).
	during, firstAfter := 0, time.Duration(-1)
	for _, at := range sendTimes(s, l) {
		switch {
		case at.After(faultAt.Add(5*time.Second)) && at.Before(faultEnd):
			during++
		case at.After(faultEnd) && firstAfter < 0:
			firstAfter = at.Sub(faultEnd)
		}
	}
	m := senderMetrics(t, s)
	l.report(t, s, "store outage", start, 0, fmt.Sprintf("%d posted at 10/s; store down %s: %d sends from 5 s into it to its end, paused after %s, first send %s after it, StoreErrors %g, PausedTime %s, StatusNotRecorded %g",
		posted, outage, during, pausedAfter.Round(time.Millisecond), firstAfter.Round(time.Millisecond), m["StoreErrors"],
		(time.Duration(m["PausedTime.sumMs"])*time.Millisecond).Round(time.Second), m["StatusNotRecorded"]))
	if during != 0 {
		t.Errorf("%d sends while the store was down: nothing may be sent unclaimed", during)
	}
	if firstAfter < 0 || firstAfter > 15*time.Second {
		t.Errorf("first send %s after the store came back, want within 15 s", firstAfter)
	}
	if m["StoreErrors"] == 0 || m["PausedTime.sumMs"] == 0 {
		t.Errorf("StoreErrors %g, PausedTime %g ms: the outage was not counted", m["StoreErrors"], m["PausedTime.sumMs"])
	}
}
