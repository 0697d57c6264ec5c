package tests

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

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

// A notification put on the queue around the API (anyone with send rights
// to the queue) from a sender the allow-list does not hold is never sent:
// the sender checks HERALD_ALLOWED_FROM too and dead-letters it as
// permanent, the reason naming the rule. One from an allowed sender, put on
// the queue the same way, is delivered; SES sees nothing of the other.
// uuidV7 is a notification id of the API's form: a lowercase UUIDv7.
func uuidV7(t *testing.T) string {
	t.Helper()
	var b [16]byte
	if _, err := rand.Read(b[6:]); err != nil {
		t.Fatal(err)
	}
	ms := uint64(time.Now().UnixMilli())
	for i := range 6 {
		b[i] = byte(ms >> (40 - 8*i))
	}
	b[6] = 0x70 | b[6]&0x0f
	b[8] = 0x80 | b[8]&0x3f
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func TestSenderOutsideTheAllowListDeadLettered(t *testing.T) {
	s := startStack(t, devstack.Config{})
	ctx := context.Background()
	l := newLedger("around the API")
	start := time.Now()
	put := func(i int, from string) string {
		t.Helper()
		// The queue message format (services/README.md): version 1, an id
		// as the API writes it (the sender deduplicates by it).
		id := uuidV7(t)
		body, err := json.Marshal(map[string]any{"v": 1, "id": id, "createdAt": time.Now().UTC(), "from": from,
			"to": []string{"victim@example.org"}, "subject": l.subject(i), "text": "x"})
		if err != nil {
			t.Fatal(err)
		}
		l.post()
		if _, err := s.SQSClient().SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(s.QueueURL()), MessageBody: aws.String(string(body))}); err != nil {
			t.Fatal(err)
		}
		return id
	}
	forged := []string{"ceo@bank.test", "Security <security@EXAMPLE.org>"}
	for i, from := range forged {
		l.acceptDoomed(l.subject(i), put(i, from))
	}
	// Allowed (the devstack allows @example.com), its domain in another case.
	l.accept(l.subject(len(forged)), put(len(forged), "Shop <shop@Example.COM>"))

	l.waitAllDelivered(t, s, 30*time.Second)
	c := l.report(t, s, "queued around the API", start, 0, fmt.Sprintf("%d from senders not on the allow-list put on the queue directly, all dead-lettered unsent", len(forged)))
	for _, d := range c.deadList {
		class, reason := d.Attributes[attrFailureClass], d.Attributes[attrFailureReason]
		if class != "permanent" || !strings.Contains(reason, "not allowed") || !strings.Contains(reason, "HERALD_ALLOWED_FROM") || strings.Contains(reason, "ceo@") {
			t.Errorf("dead letter %s: class %q, reason %q: want permanent, the rule named, the address masked", d.MessageID, class, reason)
		}
	}
	if st := s.Gate().Stats(); st.Accepted != 1 || st.Rejected != 0 {
		t.Errorf("gate stats %+v: SES must see the allowed one only", st)
	}
}
