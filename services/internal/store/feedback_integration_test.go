package store_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"herald/services/internal/store"
)

// sent claims a new notification of "svc" and records it sent as ses-<n>.
func sentNotification(t *testing.T, ctx context.Context, s *store.Store, c *clock, pmid string) string {
	t.Helper()
	id, _ := testIDs(t).New("svc")
	cl, err := s.Claim(ctx, id, "svc", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.MarkSent(ctx, cl.Lease, pmid, c.Now()); err != nil {
		t.Fatal(err)
	}
	return id
}

// permutations calls f with every order of n items.
func permutations(n int, f func([]int)) {
	p := make([]int, n)
	for i := range p {
		p[i] = i
	}
	var rec func(int)
	rec = func(k int) {
		if k == n {
			f(append([]int(nil), p...))
			return
		}
		for i := k; i < n; i++ {
			p[k], p[i] = p[i], p[k]
			rec(k + 1)
			p[k], p[i] = p[i], p[k]
		}
	}
	rec(0)
}

// Whatever the order in which SES's events arrive, and however often, each
// recipient ends with the highest outcome.
func TestFeedbackOrderOnDynalite(t *testing.T) {
	ctx, _, c, s := setup(t)
	t0 := c.Now()
	alice, bob := "alice@example.com", "bob@example.org"
	ev := func(rs ...store.Recipient) store.Feedback {
		return store.Feedback{ProviderMessageID: "ses-1", SentAt: t0, Recipients: rs}
	}
	events := []store.Feedback{
		ev(store.Recipient{Address: alice, Outcome: store.OutcomeDelayed, At: t0.Add(time.Second), Type: "TransientCommunicationFailure", Status: "4.4.1"}),
		ev(store.Recipient{Address: alice, Outcome: store.OutcomeDelivered, At: t0.Add(2 * time.Second), Status: "250 2.6.0"},
			store.Recipient{Address: bob, Outcome: store.OutcomeDelivered, At: t0.Add(2 * time.Second)}),
		ev(store.Recipient{Address: bob, Outcome: store.OutcomeBounced, At: t0.Add(3 * time.Second), Type: "Permanent", SubType: "General",
			Status: "5.1.1", Diagnostic: "smtp; 550 5.1.1 user unknown"}),
		ev(store.Recipient{Address: "Alice@Example.com", Outcome: store.OutcomeComplained, At: t0.Add(10 * time.Second), Type: "abuse"}),
	}
	send := ev() // the Send event: sent evidence only
	var want string
	n := 0
	permutations(len(events), func(order []int) {
		n++
		id := sentNotification(t, ctx, s, c, "ses-1")
		seq := []store.Feedback{}
		if n%2 == 0 {
			seq = append(seq, send)
		}
		for _, i := range order {
			seq = append(seq, events[i])
		}
		// Repeats of the first two, as SQS's at-least-once delivery makes them.
		seq = append(seq, events[order[0]], events[order[1]], send)
		for i, fb := range seq {
			if _, err := s.RecordFeedback(ctx, id, fb); err != nil {
				t.Fatalf("order %v, event %d: %v", order, i, err)
			}
		}
		st, err := s.Get(ctx, id, "svc")
		if err != nil {
			t.Fatal(err)
		}
		got := fmt.Sprint(st.Recipients)
		if want == "" {
			want = got
			if len(st.Recipients) != 2 || st.Recipients[0].Outcome != store.OutcomeComplained || st.Recipients[0].Type != "abuse" ||
				st.Recipients[1].Outcome != store.OutcomeBounced || !st.Recipients[1].PermanentFailure() || st.Recipients[1].Diagnostic != "smtp; 550 5.1.1 user unknown" ||
				!st.Recipients[1].At.Equal(t0.Add(3*time.Second)) {
				t.Fatalf("outcomes %+v; want alice complained, bob bounced for good", st.Recipients)
			}
		}
		if got != want || st.State != store.StateSent || st.ProviderMessageID != "ses-1" {
			t.Fatalf("order %v: %s (state %s)\nwant          %s", order, got, st.State, want)
		}
	})
	t.Logf("%d orders, each with repeats, end as %s", n, want)
}

// Events racing on one recipient end with the highest of them.
func TestConcurrentFeedbackOnDynalite(t *testing.T) {
	ctx, _, c, s := setup(t)
	id := sentNotification(t, ctx, s, c, "ses-1")
	const n = 24
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			outcome := []store.Outcome{store.OutcomeDelayed, store.OutcomeDelivered, store.OutcomeBounced}[i%3]
			r := store.Recipient{Address: "a@example.com", Outcome: outcome, At: c.Now().Add(time.Duration(i) * time.Millisecond), Type: "Transient"}
			_, errs[i] = s.RecordFeedback(ctx, id, store.Feedback{ProviderMessageID: "ses-1", SentAt: c.Now(), Recipients: []store.Recipient{r}})
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	st, _ := s.Get(ctx, id, "svc")
	// The highest: a bounce, the latest of them (i = 23).
	if len(st.Recipients) != 1 || st.Recipients[0].Outcome != store.OutcomeBounced || !st.Recipients[0].At.Equal(c.Now().Add(23*time.Millisecond)) {
		t.Fatalf("recipients %+v, want the bounce at +23ms", st.Recipients)
	}
}

// The first SES event records the send before the sender does (or when it
// could not): the next claim finds it sent instead of sending again.
func TestFeedbackClosesTheDuplicateWindowOnDynalite(t *testing.T) {
	ctx, _, c, s := setup(t)
	id, _ := testIDs(t).New("svc")
	cl, err := s.Claim(ctx, id, "svc", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	// The sender dies after SES accepted; SES's Send event lands.
	res, err := s.RecordFeedback(ctx, id, store.Feedback{ProviderMessageID: "ses-1", SentAt: c.Now()})
	if err != nil || res.OtherSend || res.Writes != 1 {
		t.Fatalf("send event: %+v, %v", res, err)
	}
	if st, _ := s.Get(ctx, id, "svc"); st.State != store.StateSent || st.ProviderMessageID != "ses-1" {
		t.Fatalf("status after the send event: %+v", st)
	}
	c.Advance(time.Minute)
	if again, err := s.Claim(ctx, id, "svc", time.Minute); err != nil || again.Outcome != store.AlreadySent || again.Sent.ProviderMessageID != "ses-1" {
		t.Fatalf("claim after the lease: %+v, %v; want already sent", again, err)
	}
	// A late MarkSent of the same send is no duplicate; of another send it is.
	if r, err := s.MarkSent(ctx, cl.Lease, "ses-1", c.Now()); err != nil || r.Duplicate {
		t.Fatalf("MarkSent of the same send: %+v, %v", r, err)
	}
	if res, err := s.RecordFeedback(ctx, id, store.Feedback{ProviderMessageID: "ses-2", SentAt: c.Now()}); err != nil || !res.OtherSend || res.RecordedMessageID != "ses-1" {
		t.Fatalf("event of a second send: %+v, %v; want OtherSend of ses-1", res, err)
	}
}

// Feedback never creates a record: an unknown or expired notification is
// ErrNotFound and the table is left as it was.
func TestFeedbackForAnUnknownNotificationOnDynalite(t *testing.T) {
	ctx := context.Background()
	emu, table := newTable(t)
	c := newClock()
	s := newStore(t, c, emu.Client(), table)
	unknown, _ := testIDs(t).New("svc")
	fb := store.Feedback{ProviderMessageID: "ses-9", SentAt: c.Now(), Recipients: []store.Recipient{{Address: "a@example.com", Outcome: store.OutcomeDelivered, At: c.Now()}}}
	if _, err := s.RecordFeedback(ctx, unknown, fb); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown id: %v, want ErrNotFound", err)
	}
	out, err := emu.Client().GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(table),
		Key: map[string]types.AttributeValue{store.KeyAttribute: &types.AttributeValueMemberS{Value: "n#" + unknown}}})
	if err != nil || len(out.Item) != 0 {
		t.Fatalf("the table holds %v (%v) after feedback for an unknown id", out.Item, err)
	}
	old := sentNotification(t, ctx, s, c, "ses-1")
	c.Advance(statusTTL + time.Second)
	if _, err := s.RecordFeedback(ctx, old, fb); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("expired record: %v, want ErrNotFound", err)
	}
}

// Requests per event, counted by the emulator's proxy (DESIGN.md).
func TestFeedbackRequestsOnDynalite(t *testing.T) {
	ctx, emu, c, s := setup(t)
	id := sentNotification(t, ctx, s, c, "ses-1")
	at := c.Now()
	r := func(addr string, o store.Outcome, d time.Duration) store.Recipient {
		return store.Recipient{Address: addr, Outcome: o, At: at.Add(d)}
	}
	fb := func(rs ...store.Recipient) store.Feedback {
		return store.Feedback{ProviderMessageID: "ses-1", SentAt: at, Recipients: rs}
	}
	var many []store.Recipient
	for i := range 30 {
		many = append(many, r(fmt.Sprintf("m%02d@example.com", i), store.OutcomeDelivered, time.Second))
	}
	for _, step := range []struct {
		name string
		fb   store.Feedback
		want string
	}{
		{"send", fb(), "UpdateItem=1"},
		{"delivery to two", fb(r("a@x.org", store.OutcomeDelivered, time.Second), r("b@x.org", store.OutcomeDelivered, time.Second)), "UpdateItem=1"},
		{"the same delivery again", fb(r("a@x.org", store.OutcomeDelivered, time.Second), r("b@x.org", store.OutcomeDelivered, time.Second)), "UpdateItem=1"},
		{"a bounce of one, and a stale delay of the other", fb(r("a@x.org", store.OutcomeBounced, 2*time.Second), r("b@x.org", store.OutcomeDelayed, 0)), "UpdateItem=2"},
		{"delivery to 30", fb(many...), "UpdateItem=2"},
	} {
		before := emu.Stats()
		if _, err := s.RecordFeedback(ctx, id, step.fb); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		got := emu.Stats().Sub(before).String()
		t.Logf("%-48s %s", step.name, got)
		if got != step.want {
			t.Errorf("%s: requests %q, want %q", step.name, got, step.want)
		}
	}
	st, _ := s.Get(ctx, id, "svc")
	if len(st.Recipients) != 32 || st.Recipients[0].Outcome != store.OutcomeBounced || st.Recipients[1].Outcome != store.OutcomeDelivered {
		t.Fatalf("%d recipients, first %+v; want 32, a@ bounced, b@ delivered", len(st.Recipients), st.Recipients[:2])
	}
}
