package feedback

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"testing"

	"herald/services/internal/herald"
	"herald/services/internal/store"
)

// memStore keeps what RecordFeedback would, in memory, by the store's rule
// (store.Recipient.Supersedes); the dynalite tests of package store show
// that its conditional writes follow the same rule.
type memStore struct {
	mu    sync.Mutex
	known map[string]bool
	pmid  map[string]string
	recs  map[string]map[string]store.Recipient
	err   error // answered instead, when set
	calls int
}

func newMemStore(ids ...string) *memStore {
	m := &memStore{known: map[string]bool{}, pmid: map[string]string{}, recs: map[string]map[string]store.Recipient{}}
	for _, id := range ids {
		m.known[id] = true
		m.recs[id] = map[string]store.Recipient{}
	}
	return m
}

func (m *memStore) RecordFeedback(_ context.Context, id string, fb store.Feedback) (store.FeedbackResult, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	if m.err != nil {
		return store.FeedbackResult{}, m.err
	}
	if !m.known[id] {
		return store.FeedbackResult{}, fmt.Errorf("feedback for %s: %w", id, store.ErrNotFound)
	}
	var res store.FeedbackResult
	if m.pmid[id] == "" {
		m.pmid[id] = fb.ProviderMessageID
	}
	res.RecordedMessageID, res.OtherSend = m.pmid[id], m.pmid[id] != fb.ProviderMessageID
	for _, r := range fb.Recipients {
		if old, ok := m.recs[id][r.Address]; !ok || r.Supersedes(old) {
			m.recs[id][r.Address] = r
			res.Raised = append(res.Raised, r)
		}
	}
	return res, nil
}

// outcomes is the recorded outcome of each recipient of id.
func (m *memStore) outcomes(id string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for addr, r := range m.recs[id] {
		out = append(out, fmt.Sprintf("%s=%s/%s/%s@%s", addr, r.Outcome, r.Type, r.SubType, r.At.Format("15:04:05.000")))
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

func newTestProcessor(t *testing.T, st Store) (*Processor, *herald.Metrics) {
	t.Helper()
	metrics := herald.NewMetrics(&bytes.Buffer{}, "test", "email-sender")
	p, err := NewProcessor(st, ProcessorConfig{TopicARN: testTopic, Logger: slog.New(slog.DiscardHandler), Metrics: metrics})
	if err != nil {
		t.Fatal(err)
	}
	return p, metrics
}

// The events each simulator address brings (as the local SES gate and SES
// publish them), in any order and with repeats, end in the same outcome.
func TestProcessorOrderAndRepeats(t *testing.T) {
	const (
		t1 = "2026-03-01T12:00:01.000Z"
		t2 = "2026-03-01T12:00:02.000Z"
		t3 = "2026-03-01T12:00:09.000Z"
	)
	success, bounce, complaint, ooto := "success@simulator.amazonses.com", "bounce@simulator.amazonses.com", "complaint@simulator.amazonses.com", "ooto@simulator.amazonses.com"
	all := []string{success, bounce, complaint, ooto}
	events := []string{
		sendEvent(testID, all...),
		deliveryEvent(testID, t2, success, complaint, ooto),
		bounceEvent(testID, t2, "Permanent", "General", "smtp; 550 5.1.1 user unknown", bounce),
		complaintEvent(testID, t3, "", complaint),
		delayEvent(testID, t1, ooto),
	}
	want := "bounce@simulator.amazonses.com=bounced/Permanent/General@12:00:02.000 " +
		"complaint@simulator.amazonses.com=complained/abuse/@12:00:09.000 " +
		"ooto@simulator.amazonses.com=delivered//@12:00:02.000 " +
		"success@simulator.amazonses.com=delivered//@12:00:02.000"
	orders := [][]int{{0, 1, 2, 3, 4}, {4, 3, 2, 1, 0}, {3, 0, 4, 1, 2}, {1, 3, 1, 0, 3, 4, 2, 2, 4}}
	var counts []map[string]float64
	for _, order := range orders {
		st := newMemStore(testID)
		p, metrics := newTestProcessor(t, st)
		for _, i := range order {
			if _, err := p.Process(context.Background(), sns(t, events[i])); err != nil {
				t.Fatalf("order %v, event %d: %v", order, i, err)
			}
		}
		if got := st.outcomes(testID); got != want {
			t.Fatalf("order %v:\n got %s\nwant %s", order, got, want)
		}
		// The counts are of outcomes recorded: never raised by repeats, but
		// an outcome that arrives after a higher one is not recorded (a
		// delay after the delivery, a delivery after the complaint).
		c := metrics.Totals()
		if c[MetricBounced.Name] != 1 || c[MetricComplained.Name] != 1 || c[MetricDelivered.Name] < 2 || c[MetricDelivered.Name] > 3 {
			t.Errorf("order %v: %v bounced, %v complained, %v delivered; want 1, 1, 2 or 3", order, c[MetricBounced.Name], c[MetricComplained.Name], c[MetricDelivered.Name])
		}
		counts = append(counts, c)
	}
	// In order, the delay (earlier than the delivery) raises nothing; first,
	// it is recorded, then superseded.
	if counts[0][MetricDelayed.Name] != 0 || counts[0][MetricDelivered.Name] != 3 || counts[1][MetricDelayed.Name] != 1 || counts[3][MetricEvents.Name] != 9 {
		t.Errorf("delays counted %v and %v, want 0 and 1; events of the repeating order %v, want 9",
			counts[0][MetricDelayed.Name], counts[1][MetricDelayed.Name], counts[3][MetricEvents.Name])
	}
}

// A hard bounce puts the address on SES's suppression list; a later send to
// it is accepted by SES and bounced at once (OnAccountSuppressionList),
// never delivered: a permanent failure with that reason.
func TestProcessorSuppressedAfterABounce(t *testing.T) {
	const second = "018f6a4c-2b1e-7c3d-9e4f-5a6b7c8d9e10"
	addr := "gone@example.org"
	st := newMemStore(testID, second)
	p, _ := newTestProcessor(t, st)
	for _, rec := range []string{
		sendEvent(testID, addr),
		bounceEvent(testID, "2026-03-01T12:00:01.000Z", "Permanent", "General", "smtp; 550 5.1.1 user unknown", addr),
		sendEvent(second, addr),
		bounceEvent(second, "2026-03-01T12:05:00.000Z", "Permanent", "OnAccountSuppressionList",
			"Amazon SES did not send the message to this address because it is on the suppression list for your account.", addr),
	} {
		if _, err := p.Process(context.Background(), sns(t, rec)); err != nil {
			t.Fatal(err)
		}
	}
	r := st.recs[second][addr]
	if !r.PermanentFailure() || r.SubType != "OnAccountSuppressionList" || !strings.Contains(r.Diagnostic, "suppression list") {
		t.Fatalf("the second send's outcome %+v, want a permanent bounce for the suppression list", r)
	}
	if got := st.outcomes(second); strings.Contains(got, "delivered") {
		t.Fatalf("the second send was delivered: %s", got)
	}
}

func TestProcessorErrors(t *testing.T) {
	ctx := context.Background()
	body := sns(t, deliveryEvent(testID, "2026-03-01T12:00:02.000Z", "a@example.com"))
	t.Run("unknown notification: permanent", func(t *testing.T) {
		p, _ := newTestProcessor(t, newMemStore())
		_, err := p.Process(ctx, body)
		var m *Malformed
		if !errors.As(err, &m) || m.Kind != KindUnknown || !strings.Contains(m.Reason, testID) {
			t.Fatalf("err = %v, want an unknown-notification *Malformed naming the id", err)
		}
	})
	t.Run("store refuses the input: permanent", func(t *testing.T) {
		st := newMemStore(testID)
		st.err = fmt.Errorf("%w for x: recipient address too long", store.ErrInvalidFeedback)
		p, _ := newTestProcessor(t, st)
		var m *Malformed
		if _, err := p.Process(ctx, body); !errors.As(err, &m) || m.Kind != KindBadValue {
			t.Fatalf("err = %v, want a bad-value *Malformed", err)
		}
	})
	t.Run("store down: transient", func(t *testing.T) {
		st := newMemStore(testID)
		st.err = context.DeadlineExceeded
		p, _ := newTestProcessor(t, st)
		_, err := p.Process(ctx, body)
		var m *Malformed
		if err == nil || errors.As(err, &m) || !store.Unavailable(err) {
			t.Fatalf("err = %v, want a transient error that store.Unavailable recognises", err)
		}
	})
	t.Run("malformed: the store is not asked", func(t *testing.T) {
		st := newMemStore(testID)
		p, _ := newTestProcessor(t, st)
		if _, err := p.Process(ctx, []byte(`{}`)); err == nil || st.calls != 0 {
			t.Fatalf("err = %v after %d store calls", err, st.calls)
		}
	})
	t.Run("a second send is counted", func(t *testing.T) {
		st := newMemStore(testID)
		st.pmid[testID] = "another-ses-message"
		p, metrics := newTestProcessor(t, st)
		res, err := p.Process(ctx, sns(t, sendEvent(testID, "a@example.com")))
		if err != nil || !res.Update.OtherSend || metrics.Totals()[MetricDuplicateSends.Name] != 1 {
			t.Fatalf("result %+v, %v, counts %v", res, err, metrics.Totals())
		}
	})
	if _, err := NewProcessor(nil, ProcessorConfig{Logger: slog.Default()}); err == nil {
		t.Error("a processor without a store")
	}
}
