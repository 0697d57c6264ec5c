package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
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
