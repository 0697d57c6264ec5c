package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestHealthGoesUnavailableWhenPollingStalls(t *testing.T) {
	lastPoll := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	now := lastPoll
	srv := newHealthServer(health{
		last:       func() time.Time { return lastPoll },
		now:        func() time.Time { return now },
		stallAfter: 90 * time.Second,
	})
	cases := []struct {
		name   string
		after  time.Duration
		status int
		word   string
	}{
		{"just polled", 0, http.StatusOK, "ok"},
		{"within the threshold", 90 * time.Second, http.StatusOK, "ok"},
		{"stalled", 91 * time.Second, http.StatusServiceUnavailable, "stalled"},
	}
	for _, tc := range cases {
		for _, path := range []string{"/healthz", "/api/notification/send-email"} {
			t.Run(tc.name+" "+path, func(t *testing.T) {
				now = lastPoll.Add(tc.after)
				rec := httptest.NewRecorder()
				srv.Handler.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
				if rec.Code != tc.status {
					t.Fatalf("status %d, want %d", rec.Code, tc.status)
				}
				var body struct{ Status, LastPoll string }
				if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
					t.Fatalf("body %q: %v", rec.Body, err)
				}
				if body.Status != tc.word || body.LastPoll != "2026-03-01T12:00:00Z" {
					t.Errorf("body %+v", body)
				}
			})
		}
	}
	rec := httptest.NewRecorder()
	srv.Handler.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/healthz", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /healthz: %d, want 405", rec.Code)
	}
	if srv.ReadHeaderTimeout == 0 || srv.WriteTimeout == 0 || srv.IdleTimeout == 0 {
		t.Error("health server without explicit timeouts")
	}
}

// The container health check (the healthcheck subcommand) asks the original
// design's path of the running health server, and fails once it reports a
// stall.
func TestHealthcheckAsksTheHealthPath(t *testing.T) {
	lastPoll := time.Now()
	var stalled atomic.Bool
	srv := newHealthServer(health{
		last: func() time.Time { return lastPoll },
		now: func() time.Time {
			if stalled.Load() {
				return lastPoll.Add(time.Hour)
			}
			return lastPoll
		},
		stallAfter: time.Minute,
	})
	var mu sync.Mutex
	var asked []string
	inner := srv.Handler
	srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		asked = append(asked, r.URL.Path)
		mu.Unlock()
		inner.ServeHTTP(w, r)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	getenv := func(k string) string { return map[string]string{"HERALD_HTTP_ADDR": ":" + port}[k] }

	if err := run(context.Background(), []string{"healthcheck"}, getenv, io.Discard); err != nil {
		t.Fatalf("healthy sender: %v", err)
	}
	stalled.Store(true)
	if err := run(context.Background(), []string{"healthcheck"}, getenv, io.Discard); err == nil {
		t.Fatal("stalled sender: the health check passed")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(asked) != 2 || asked[0] != "/api/notification/send-email" || asked[1] != asked[0] {
		t.Errorf("the health check asked %v, want /api/notification/send-email twice", asked)
	}
}

// The SES feedback consumer's loop counts too, and a pause for a failing
// dependency is reported without failing the check.
func TestHealthCoversTheFeedbackConsumerAndShowsPauses(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	var feedbackLast time.Time
	paused := false
	srv := newHealthServer(health{
		last:         func() time.Time { return now },
		feedbackLast: func() time.Time { return feedbackLast },
		paused:       func() (bool, string) { return paused, "state store: timeout" },
		now:          func() time.Time { return now },
		stallAfter:   90 * time.Second,
	})
	cases := []struct {
		name            string
		feedbackAgo     time.Duration
		paused          bool
		code            int
		status, sending string
		pausedBy        string
	}{
		{"both polling", time.Second, false, http.StatusOK, "ok", "on", ""},
		{"sending paused for the store", time.Second, true, http.StatusOK, "ok", "paused", "state store: timeout"},
		{"feedback stalled", 91 * time.Second, false, http.StatusServiceUnavailable, "stalled", "on", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			feedbackLast, paused = now.Add(-tc.feedbackAgo), tc.paused
			rec := httptest.NewRecorder()
			srv.Handler.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
			var body struct{ Status, Sending, PausedBy, FeedbackLastPoll string }
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatal(err)
			}
			if rec.Code != tc.code || body.Status != tc.status || body.Sending != tc.sending || body.PausedBy != tc.pausedBy || body.FeedbackLastPoll == "" {
				t.Errorf("%d %+v, want %d %s %s %q", rec.Code, body, tc.code, tc.status, tc.sending, tc.pausedBy)
			}
		})
	}
}
