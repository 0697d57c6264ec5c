package main

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// fakeTimer stands in for time.After: each call arms a timer that fires only
// when the test says, and reports the duration asked for on armed.
type fakeTimer struct {
	mu    sync.Mutex
	fires []chan time.Time
	armed chan time.Duration
}

func newFakeTimer() *fakeTimer { return &fakeTimer{armed: make(chan time.Duration, 1000)} }

func (ft *fakeTimer) after(d time.Duration) <-chan time.Time {
	ch := make(chan time.Time, 1)
	ft.mu.Lock()
	ft.fires = append(ft.fires, ch)
	ft.mu.Unlock()
	ft.armed <- d
	return ch
}

func (ft *fakeTimer) fire(i int) {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	ft.fires[i] <- time.Now()
}

// waitArmed waits for the next timer to be armed and returns its duration.
func (ft *fakeTimer) waitArmed(t *testing.T) time.Duration {
	t.Helper()
	select {
	case d := <-ft.armed:
		return d
	case <-time.After(10 * time.Second):
		t.Fatal("no timer was armed")
		return 0
	}
}

func waitResult(t *testing.T, ch <-chan result) result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("no result")
		return result{}
	}
}

func newTestCoalescer(t *testing.T, f *fakeSQS, maxBytes int) (*coalescer, *fakeTimer) {
	ft := newFakeTimer()
	c := mustCoalescer(t, &queue{api: f, url: testQueueURL, maxBatchBytes: maxBytes}, 2*time.Millisecond, ft.after)
	t.Cleanup(c.close)
	return c, ft
}

func mustCoalescer(t *testing.T, q *queue, linger time.Duration, after func(time.Duration) <-chan time.Time) *coalescer {
	t.Helper()
	c, err := newCoalescer(q, linger, 5*time.Second, 1024, after)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func sendAsync(c *coalescer, ctx context.Context, body string) <-chan result {
	ch := make(chan result, 1)
	go func() { ch <- c.send(ctx, message{body: body}) }()
	return ch
}

func TestCoalescerLoneSendWaitsForTheLingerOnly(t *testing.T) {
	f := &fakeSQS{}
	c, ft := newTestCoalescer(t, f, 262144)
	res := sendAsync(c, context.Background(), "lone")
	// Given a lone send: the coalescer arms one timer of the linger, and
	// nothing but that timer (or nine more sends) can release the batch.
	if d := ft.waitArmed(t); d != 2*time.Millisecond {
		t.Fatalf("timer armed for %s, want the linger 2ms", d)
	}
	if n := len(f.batchCalls()); n != 0 {
		t.Fatalf("%d calls before the linger ended", n)
	}
	// When the linger ends, the send goes at once, alone.
	ft.fire(0)
	if r := waitResult(t, res); r.err != nil || r.messageID != "mid-lone" {
		t.Fatalf("result %+v", r)
	}
	if calls := f.batchCalls(); len(calls) != 1 || len(calls[0]) != 1 {
		t.Errorf("calls %v, want one of one entry", calls)
	}
}

func TestCoalescerFlushesAtTen(t *testing.T) {
	f := &fakeSQS{}
	c, ft := newTestCoalescer(t, f, 262144)
	// Given eleven concurrent sends and timers that never fire on their
	// own: ten must leave together, without waiting for any timer.
	type answer struct {
		i int
		r result
	}
	answers := make(chan answer, 11)
	for i := range 11 {
		go func() { answers <- answer{i, c.send(context.Background(), message{body: fmt.Sprintf("m%d", i)})} }()
	}
	got := map[int]result{}
	next := func() {
		select {
		case a := <-answers:
			got[a.i] = a.r
		case <-time.After(10 * time.Second):
			t.Fatalf("%d of 11 answered", len(got))
		}
	}
	for len(got) < 10 {
		next()
	}
	if calls := f.batchCalls(); len(calls) != 1 || len(calls[0]) != 10 {
		t.Fatalf("calls %v, want one of ten", calls)
	}
	// The eleventh started a batch of its own (a second timer): its timer
	// releases it.
	ft.waitArmed(t)
	ft.waitArmed(t)
	ft.fire(1)
	next()
	for i, r := range got {
		if r.err != nil || r.messageID != fmt.Sprintf("mid-m%d", i) {
			t.Errorf("send %d: %+v", i, r)
		}
	}
	if calls := f.batchCalls(); len(calls) != 2 || len(calls[1]) != 1 {
		t.Errorf("calls %v, want ten then one", calls)
	}
}

func TestCoalescerSplitsByPayloadSize(t *testing.T) {
	f := &fakeSQS{}
	c, ft := newTestCoalescer(t, f, 100)
	a := sendAsync(c, context.Background(), string(make([]byte, 60)))
	ft.waitArmed(t)
	// A second 60-byte message would make 120 > 100: the first leaves now.
	b := sendAsync(c, context.Background(), string(make([]byte, 59))+"b")
	if r := waitResult(t, a); r.err != nil {
		t.Fatalf("first: %+v", r)
	}
	ft.waitArmed(t)
	ft.fire(1)
	if r := waitResult(t, b); r.err != nil {
		t.Fatalf("second: %+v", r)
	}
	if calls := f.batchCalls(); len(calls) != 2 || len(calls[0]) != 1 || len(calls[1]) != 1 {
		t.Errorf("calls %v, want two of one entry", calls)
	}
}

func TestCoalescerAnswersEachCallerItsOwnEntry(t *testing.T) {
	f := &fakeSQS{failEntry: func(id, body string, seen int) *types.BatchResultErrorEntry {
		switch body {
		case "m3":
			return &types.BatchResultErrorEntry{Code: aws.String("InvalidMessageContents"), SenderFault: true}
		case "m6":
			return &types.BatchResultErrorEntry{Code: aws.String("InternalError"), SenderFault: false}
		case "m8":
			if seen == 0 {
				return &types.BatchResultErrorEntry{Code: aws.String("InternalError"), SenderFault: false}
			}
		}
		return nil
	}}
	c, _ := newTestCoalescer(t, f, 262144)
	var results []<-chan result
	for i := range 10 {
		results = append(results, sendAsync(c, context.Background(), fmt.Sprintf("m%d", i)))
	}
	for i, ch := range results {
		r := waitResult(t, ch)
		switch i {
		case 3:
			if r.err == nil || r.err.status != http.StatusBadRequest {
				t.Errorf("m3: %+v, want 400", r)
			}
		case 6:
			if r.err == nil || r.err.status != http.StatusServiceUnavailable {
				t.Errorf("m6: %+v, want 503", r)
			}
		default:
			if r.err != nil || r.messageID != fmt.Sprintf("mid-m%d", i) {
				t.Errorf("m%d: %+v", i, r)
			}
		}
	}
	// One call of ten, then one retry of the two SQS-side failures.
	calls := f.batchCalls()
	if len(calls) != 2 || len(calls[0]) != 10 || len(calls[1]) != 2 {
		t.Errorf("calls %v", calls)
	}
}

func TestCoalescerCloseFlushesWhatIsGathered(t *testing.T) {
	f := &fakeSQS{}
	ft := newFakeTimer()
	c := mustCoalescer(t, &queue{api: f, url: testQueueURL, maxBatchBytes: 262144}, time.Hour, ft.after)
	res := sendAsync(c, context.Background(), "gathered")
	ft.waitArmed(t)
	c.close() // the timer never fires: close itself must send it
	if r := waitResult(t, res); r.err != nil {
		t.Fatalf("gathered send: %+v", r)
	}
	if r := c.send(context.Background(), message{body: "late"}); r.err == nil || r.err.status != http.StatusServiceUnavailable {
		t.Errorf("send after close: %+v, want 503", r)
	}
	if q := f.queued(); !slices.Equal(q, []string{"gathered"}) {
		t.Errorf("queued %v", q)
	}
}

func TestCoalescerSkipsCallersThatGaveUp(t *testing.T) {
	f := &fakeSQS{}
	c, ft := newTestCoalescer(t, f, 262144)
	ctx, cancel := context.WithCancel(context.Background())
	res := sendAsync(c, ctx, "abandoned")
	ft.waitArmed(t)
	cancel()
	if r := waitResult(t, res); r.err == nil || r.err.status != http.StatusServiceUnavailable {
		t.Fatalf("canceled caller: %+v", r)
	}
	ft.fire(0)
	c.close()
	if calls := f.batchCalls(); len(calls) != 0 {
		t.Errorf("calls %v for a caller that had gone", calls)
	}
}

// TestCoalescerConcurrent runs many senders with the real timer under the
// race detector: every caller gets its own message id, no call exceeds ten.
func TestCoalescerConcurrent(t *testing.T) {
	f := &fakeSQS{}
	c := mustCoalescer(t, &queue{api: f, url: testQueueURL, maxBatchBytes: 262144}, 2*time.Millisecond, time.After)
	t.Cleanup(c.close)
	const n = 300
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			body := fmt.Sprintf("c%d", i)
			if r := c.send(context.Background(), message{body: body}); r.err != nil || r.messageID != "mid-"+body {
				errs <- fmt.Errorf("send %d: %+v", i, r)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	total := 0
	for _, call := range f.batchCalls() {
		if len(call) > 10 {
			t.Errorf("a call of %d entries", len(call))
		}
		total += len(call)
	}
	if total != n || len(f.queued()) != n {
		t.Errorf("%d entries sent, %d queued; want %d", total, len(f.queued()), n)
	}
}

func TestChunks(t *testing.T) {
	msg := func(n int) message { return message{body: string(make([]byte, n))} }
	for _, c := range []struct {
		name string
		msgs []message
		max  int
		want [][2]int
	}{
		{"none", nil, 100, nil},
		{"tens", slices.Repeat([]message{msg(1)}, 25), 100, [][2]int{{0, 10}, {10, 20}, {20, 25}}},
		{"by size", []message{msg(60), msg(40), msg(1), msg(100), msg(50)}, 100, [][2]int{{0, 2}, {2, 3}, {3, 4}, {4, 5}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := chunks(c.msgs, c.max); !slices.Equal(got, c.want) {
				t.Errorf("chunks %v, want %v", got, c.want)
			}
		})
	}
}
