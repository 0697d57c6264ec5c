package tests

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"herald/services/devstack"
)

// BenchmarkPipeline measures mails per second through the local pipeline:
// notifications posted to the API by concurrent clients, queued on SQS,
// sent by the sender through the SES gate into the SES emulator. Each
// iteration posts HERALD_BENCH_MAILS notifications (default 2000) and waits
// until SES accepted all of them. Run it with
//
//	go test -run '^$' -bench Pipeline ./tests
//
// Figures: posted/s (API accepts); sent/s (SES accepts from the first send
// to the one that completes 99%); mails/s@99% and mails/s end to end (from
// the first post until 99% and until all are accepted by SES: the last few
// show the tail, e.g. a batch that waited out a visibility timeout).
func BenchmarkPipeline(b *testing.B) {
	mails := 2000
	if v := os.Getenv("HERALD_BENCH_MAILS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100000 {
			b.Fatalf("HERALD_BENCH_MAILS %q: want 1..100000", v)
		}
		mails = n
	}
	s := startStack(b, devstack.Config{
		// The account's rate must not be what is measured.
		MaxSendRate:  100000,
		APIVariables: map[string]string{"HERALD_RATE_LIMIT": "100000", "HERALD_RATE_BURST": "100000"},
	})
	a := newAPI(s)
	ctx := context.Background()
	const clients = 16

	var postRate, sendRate, e2eRate, e2eRate99 float64
	b.ResetTimer()
	for iter := 0; iter < b.N; iter++ {
		prefix := fmt.Sprintf("bench %s #", runID())
		s.Gate().Reset()
		start := time.Now()
		var next, failed atomic.Int64
		var wg sync.WaitGroup
		for c := 0; c < clients; c++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := next.Add(1)
					if i > int64(mails) {
						return
					}
					r, err := a.post(ctx, notification{To: []string{"reader@example.org"}, Subject: fmt.Sprintf("%s%d", prefix, i), Text: "benchmark"})
					if err != nil || r.Status != http.StatusAccepted {
						failed.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		posted := time.Since(start)
		if failed.Load() > 0 {
			b.Fatalf("%d of %d posts failed", failed.Load(), mails)
		}
		waitFor(b, 10*time.Minute, "all benchmark mails sent", func() (bool, string) {
			per, _ := delivered(s, prefix)
			return len(per) == mails, fmt.Sprintf("%d of %d", len(per), mails)
		})
		// The first SES accept of each notification, in time order.
		firstSend := map[string]time.Time{}
		for _, x := range s.Gate().Sends() {
			if t, ok := firstSend[x.Subject]; !ok || x.At.Before(t) {
				firstSend[x.Subject] = x.At
			}
		}
		times := make([]time.Time, 0, len(firstSend))
		for _, t := range firstSend {
			times = append(times, t)
		}
		sort.Slice(times, func(i, j int) bool { return times[i].Before(times[j]) })
		first, last := times[0], times[len(times)-1]
		n99 := (len(times)*99 + 99) / 100
		t99 := times[n99-1]
		postRate = float64(mails) / posted.Seconds()
		sendRate = float64(n99) / t99.Sub(first).Seconds()
		e2eRate = float64(mails) / last.Sub(start).Seconds()
		e2eRate99 = float64(n99) / t99.Sub(start).Seconds()
		b.Logf("%d mails: posted in %s (%.0f/s); 99%% sent %s after the first post (%.0f mails/s end to end, %.0f sent/s), all %s (%.0f mails/s)",
			mails, posted.Round(time.Millisecond), postRate, t99.Sub(start).Round(time.Millisecond), e2eRate99, sendRate,
			last.Sub(start).Round(time.Millisecond), e2eRate)
	}
	b.ReportMetric(postRate, "posted/s")
	b.ReportMetric(sendRate, "sent/s")
	b.ReportMetric(e2eRate99, "mails/s@99%")
	b.ReportMetric(e2eRate, "mails/s")
}
