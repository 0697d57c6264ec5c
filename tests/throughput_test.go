package tests

import (
	"context"
	"fmt"
	"net/http"
	"os"
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
// Figures: posted/s (API accepts), sent/s (SES accepts, first to last send)
// and mails/s end to end (first post to last send).
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
		MaxSendRate: 100000,
		APIEnv:      map[string]string{"HERALD_RATE_LIMIT": "100000", "HERALD_RATE_BURST": "100000"},
	})
	a := newAPI(s)
	ctx := context.Background()
	const clients = 16

	var postRate, sendRate, e2eRate float64
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
		sends := s.Gate().Sends()
		first, last := sends[0].At, sends[0].At
		for _, x := range sends {
			if x.At.Before(first) {
				first = x.At
			}
			if x.At.After(last) {
				last = x.At
			}
		}
		postRate = float64(mails) / posted.Seconds()
		sendRate = float64(len(sends)) / last.Sub(first).Seconds()
		e2eRate = float64(mails) / last.Sub(start).Seconds()
		b.Logf("%d mails: posted in %s (%.0f/s), sent in %s (%.0f/s), end to end %s (%.0f mails/s)",
			mails, posted.Round(time.Millisecond), postRate, last.Sub(first).Round(time.Millisecond), sendRate,
			last.Sub(start).Round(time.Millisecond), e2eRate)
	}
	b.ReportMetric(postRate, "posted/s")
	b.ReportMetric(sendRate, "sent/s")
	b.ReportMetric(e2eRate, "mails/s")
}
