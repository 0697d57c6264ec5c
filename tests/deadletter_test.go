package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"herald/services/devstack"
)

// Notifications SES rejects permanently (a From the API allows, at
// example.net, that the SES gate has not verified) land in the dead-letter
// queue at once, each with its class, reason and source message id, after
// exactly one SES attempt; the sender's EMF metrics count them as
// DeadLettered and Failed{Class=permanent}. The deliverable notifications
// posted with them arrive exactly once, and nothing else is in the DLQ.
func TestPermanentFailureDeadLettered(t *testing.T) {
	s := startStack(t, devstack.Config{APIVariables: fastPosting, MetricsInterval: 500 * time.Millisecond})
	a := newAPI(s)
	ctx := context.Background()
	l := newLedger("dead-letter")
	start := time.Now()
	const good, rejected = 20, 6

	var goods []notification
	for i := range good {
		goods = append(goods, notification{To: []string{fmt.Sprintf("reader%d@example.org", i)}, Subject: l.subject(i), Text: "deliverable"})
	}
	doomed := func(i int) notification {
		return notification{From: "alerts@example.net", To: []string{fmt.Sprintf("victim%d@example.org", i)}, Subject: l.subject(good + i), Text: "never sent"}
	}
	// Half of the doomed ones alone, half in a batch with deliverable ones.
	for i := range rejected / 2 {
		n := doomed(i)
		r, err := a.post(ctx, n)
		var acc accepted
		if err != nil || r.Status != http.StatusAccepted || json.Unmarshal(r.Body, &acc) != nil || acc.ID == "" {
			t.Fatalf("post from an allowed but unverified sender: %v %s, want 202", err, r)
		}
		l.acceptDoomed(n.Subject, acc.ID)
	}
	var mixed []notification
	for i := rejected / 2; i < rejected; i++ {
		mixed = append(mixed, doomed(i), goods[i])
	}
	r, err := a.postBatch(ctx, mixed)
	var br batchReply
	if err != nil || r.Status != http.StatusAccepted || json.Unmarshal(r.Body, &br) != nil || len(br.Results) != len(mixed) {
		t.Fatalf("mixed batch: %v %s, want 202", err, r)
	}
	for i, res := range br.Results {
		if i%2 == 0 {
			l.acceptDoomed(mixed[i].Subject, res.ID)
		} else {
			l.accept(mixed[i].Subject, res.ID)
		}
	}
	if err := l.postAll(a, 4, append(goods[:rejected/2:rejected/2], goods[rejected:]...)); err != nil {
		t.Fatal(err)
	}

	l.waitAllDelivered(t, s, 30*time.Second)
	waitDrained(t, s, 10*time.Second)
	// The metrics are flushed every 500 ms: wait for them to add up.
	var m map[string]float64
	waitFor(t, 10*time.Second, "sender metrics", func() (bool, string) {
		m = senderMetrics(t, s)
		return m["DeadLettered"] >= rejected && m["Sent"] >= good, fmt.Sprint(m)
	})
	c := l.report(t, s, "dead-letter", start, 0, fmt.Sprintf("metrics: Sent %g, DeadLettered %g, Failed %g, Failed{Class=permanent} %g",
		m["Sent"], m["DeadLettered"], m["Failed"], m["Failed.permanent"]))

	// Nothing else is in the DLQ, and each dead letter is one of ours with
	// its reason.
	dead, err := s.PeekDeadLetters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(dead) != rejected || c.dead != rejected {
		t.Errorf("%d messages in the DLQ (%d of this scenario), want exactly the %d rejected", len(dead), c.dead, rejected)
	}
	for _, d := range c.deadList {
		class, reason := d.Attributes[attrFailureClass], d.Attributes[attrFailureReason]
		if class != "permanent" || d.Attributes[attrSourceMessageID] == "" {
			t.Errorf("dead letter %s: attributes %v, want class permanent and %s", d.MessageID, d.Attributes, attrSourceMessageID)
		}
		if !strings.Contains(reason, "not verified") || !strings.Contains(reason, "MessageRejected") {
			t.Errorf("dead letter %s: reason %q does not say SES rejected the unverified sender", d.MessageID, reason)
		}
		if strings.Contains(reason, "@example.net") {
			t.Errorf("dead letter %s: reason %q shows an address", d.MessageID, reason)
		}
	}
	// Dead-lettered at once: SES saw exactly one attempt of each.
	if st := s.Gate().Stats(); st.Rejected != rejected || st.Accepted != good {
		t.Errorf("gate stats %+v, want exactly %d rejected attempts and %d accepted", st, rejected, good)
	}
	// The metrics count each exactly once (read again: a later flush must
	// not add to them).
	m = senderMetrics(t, s)
	// Throttles (retried, see TestDeliveryExactlyOnce) are the only other
	// failures allowed.
	m["Failed.other"] = m["Failed"] - m["Failed.throttled"] - m["Failed.permanent"]
	for name, want := range map[string]float64{"DeadLettered": rejected, "Failed.permanent": rejected, "Failed.other": 0, "Sent": good} {
		if m[name] != want {
			t.Errorf("sender metric %s = %g, want %g (all: %v)", name, m[name], want, m)
		}
	}
}
