package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"herald/services/devstack"
)

// deliveryTotal is how many notifications the delivery scenario posts.
const deliveryTotal = 500

// deliveryMix makes the i-th notification of the delivery scenario: one to
// three recipients in to (bare, with a display name, with a non-ASCII one),
// none to two in cc, sometimes a bcc, a reply-to, a second allowed sender,
// and text, html or both.
func deliveryMix(l *ledger, i int) notification {
	n := notification{Subject: l.subject(i)}
	for k := 0; k <= i%3; k++ {
		addr := fmt.Sprintf("user%d.%d@example.org", i, k)
		switch k {
		case 1:
			addr = fmt.Sprintf("Reader %d <%s>", i, addr)
		case 2:
			addr = fmt.Sprintf("Zoë Ünal <%s>", addr)
		}
		n.To = append(n.To, addr)
	}
	for k := 0; k < i%4 && k < 2; k++ {
		n.Cc = append(n.Cc, fmt.Sprintf("cc%d.%d@example.org", i, k))
	}
	if i%5 == 0 {
		n.Bcc = []string{fmt.Sprintf("audit%d@example.org", i)}
	}
	if i%6 == 0 {
		n.From = "alerts@example.com"
	}
	if i%4 == 3 {
		n.ReplyTo = "Support <support@example.com>"
	}
	if i%3 != 1 {
		n.Text = fmt.Sprintf("plain body %d ✓\nsecond line", i)
	}
	if i%3 != 0 {
		n.HTML = fmt.Sprintf("<p>html body %d ✓</p>", i)
	}
	return n
}

// 500 notifications through the API, single posts and batches at the same
// time: each arrives in the SES emulator's store exactly once, with its
// sender, recipients, reply-to, subject and bodies; the queue ends empty,
// nothing is dead-lettered, and the sender's Sent metric counts 500. A batch
// with one invalid notification is answered 207 item by item, and the
// invalid one is never sent.
func TestDeliveryExactlyOnce(t *testing.T) {
	s := startStack(t, devstack.Config{APIVariables: fastPosting, MetricsInterval: 500 * time.Millisecond})
	a := newAPI(s)
	ctx := context.Background()
	l := newLedger("delivery")
	start := time.Now()

	want := map[string]notification{}
	var singles []notification
	var batches [][]notification
	var batch []notification
	sizes := []int{1, 7, 25, 50, 100}
	for i := range deliveryTotal {
		n := deliveryMix(l, i)
		want[n.Subject] = n
		if i%5 < 2 {
			singles = append(singles, n)
			continue
		}
		batch = append(batch, n)
		if len(batch) == sizes[len(batches)%len(sizes)] || i == deliveryTotal-1 {
			batches = append(batches, batch)
			batch = nil
		}
	}

	var wg sync.WaitGroup
	batchErrs := make(chan error, len(batches)+1)
	wg.Go(func() { batchErrs <- l.postAll(a, 8, singles) })
	for w := range 2 {
		wg.Go(func() {
			for b := w; b < len(batches); b += 2 {
				batchErrs <- postWholeBatch(ctx, a, l, batches[b])
			}
		})
	}
	wg.Wait()
	close(batchErrs)
	for err := range batchErrs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if l.len() != deliveryTotal {
		t.Fatalf("%d accepted, want %d", l.len(), deliveryTotal)
	}
	posted := time.Since(start)

	// A batch with an invalid item in the middle: 207, a result per item in
	// order, and only the valid ones queued.
	partial := []notification{
		{To: []string{"erin@example.org"}, Subject: l.prefix + "partial-0", Text: "first"},
		{To: []string{"frank@example.org"}, Subject: l.prefix + "partial-invalid"}, // no body
		{To: []string{"grace@example.org"}, Subject: l.prefix + "partial-2", HTML: "<p>third</p>"},
	}
	r, err := a.postBatch(ctx, partial)
	if err != nil {
		t.Fatal(err)
	}
	var br batchReply
	if err := json.Unmarshal(r.Body, &br); err != nil || r.Status != http.StatusMultiStatus || br.Accepted != 2 || br.Rejected != 1 || len(br.Results) != 3 {
		t.Fatalf("batch with an invalid item: %s, want 207 with 2 accepted and 1 rejected", r)
	}
	for i, code := range []int{http.StatusAccepted, http.StatusBadRequest, http.StatusAccepted} {
		res := br.Results[i]
		if res.Index != i || res.Status != code || (code == http.StatusAccepted) != (res.ID != "") {
			t.Errorf("batch result %d: %+v, want status %d", i, res, code)
		}
		if code == http.StatusAccepted {
			l.accept(partial[i].Subject, res.ID)
			want[partial[i].Subject] = partial[i]
		}
	}

	l.waitAllDelivered(t, s, 90*time.Second)
	waitDrained(t, s, 30*time.Second)
	c := l.report(t, s, "delivery", start, 0, fmt.Sprintf("posted in %s (%d single, %d batches)", posted.Round(time.Millisecond), len(singles), len(batches)+1))
	if c.delivered != deliveryTotal+2 {
		t.Errorf("%d delivered, want %d", c.delivered, deliveryTotal+2)
	}

	// The SES store: each notification exactly once, as it was posted.
	mails, err := s.Emails(ctx)
	if err != nil {
		t.Fatal(err)
	}
	stored := map[string][]devstack.Email{}
	for _, m := range mails {
		stored[m.Subject] = append(stored[m.Subject], m)
	}
	wrong := 0
	for subject, n := range want {
		got := stored[subject]
		if len(got) != 1 {
			wrong++
			t.Errorf("%q is %d times in the SES store, want exactly once", subject, len(got))
			continue
		}
		if diff := mailDiff(s, n, got[0]); diff != "" {
			wrong++
			if wrong <= 5 {
				t.Errorf("%q arrived different from what was posted: %s", subject, diff)
			}
		}
	}
	if wrong > 0 {
		t.Errorf("%d of %d notifications missing, repeated or altered in the SES store", wrong, len(want))
	}
	if len(stored[l.prefix+"partial-invalid"]) != 0 {
		t.Error("the invalid batch item was sent")
	}

	if dead, err := s.PeekDeadLetters(ctx); err != nil || len(dead) != 0 {
		t.Errorf("%d dead letters (%v), want none", len(dead), err)
	}
	// The sender counted every send in its Sent metric. The only failures
	// allowed are throttles: the sender paces itself at the SES gate's rate,
	// but two token buckets on either side of a socket can disagree for a
	// send now and then, and a throttled send is retried (and was delivered
	// once, as checked above), never dead-lettered.
	waitFor(t, 10*time.Second, "Sent metric", func() (bool, string) {
		m := senderMetrics(t, s)
		return m["Sent"] == float64(deliveryTotal+2) && m["Failed"] == m["Failed.throttled"] && m["DeadLettered"] == 0, fmt.Sprint(m)
	})
}

// postWholeBatch posts a batch that must be accepted whole (202) and records
// each item's id.
func postWholeBatch(ctx context.Context, a *api, l *ledger, ns []notification) error {
	r, err := a.postBatch(ctx, ns)
	if err != nil {
		return fmt.Errorf("batch of %d: %w", len(ns), err)
	}
	var br batchReply
	if err := json.Unmarshal(r.Body, &br); err != nil || r.Status != http.StatusAccepted || br.Accepted != len(ns) || len(br.Results) != len(ns) {
		return fmt.Errorf("batch of %d: %s, want 202 with every item accepted", len(ns), r)
	}
	for i, res := range br.Results {
		if res.Index != i || res.Status != http.StatusAccepted || res.ID == "" {
			return fmt.Errorf("batch of %d, item %d: %+v", len(ns), i, res)
		}
		l.accept(ns[i].Subject, res.ID)
	}
	return nil
}

// mailDiff says how a stored mail differs from the notification posted, or
// "" when it matches: sender, recipients (as bare addresses), reply-to,
// subject and both bodies.
func mailDiff(s *devstack.Stack, n notification, m devstack.Email) string {
	from := n.From
	if from == "" {
		from = s.Config().DefaultFrom
	}
	var diffs []string
	check := func(what string, got, want any) {
		if fmt.Sprint(got) != fmt.Sprint(want) {
			diffs = append(diffs, fmt.Sprintf("%s %v, want %v", what, got, want))
		}
	}
	check("from", bareAddress(m.From), bareAddress(from))
	check("to", bareSorted(m.Destination.To), bareSorted(n.To))
	check("cc", bareSorted(m.Destination.Cc), bareSorted(n.Cc))
	check("bcc", bareSorted(m.Destination.Bcc), bareSorted(n.Bcc))
	var replyTo []string
	if n.ReplyTo != "" {
		replyTo = []string{n.ReplyTo}
	}
	check("replyTo", bareSorted(m.ReplyTo), bareSorted(replyTo))
	check("subject", m.Subject, n.Subject)
	if m.Body.Text != n.Text || m.Body.HTML != n.HTML {
		diffs = append(diffs, fmt.Sprintf("bodies %q / %q, want %q / %q", m.Body.Text, m.Body.HTML, n.Text, n.HTML))
	}
	if len(diffs) == 0 {
		return ""
	}
	return fmt.Sprint(slices.Compact(diffs))
}
