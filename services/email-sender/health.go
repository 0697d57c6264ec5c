package main

import (
	"encoding/json"
	"net/http"
	"time"

	"herald/services/contract"
)

// health answers the liveness checks: 200 while the poll loops make
// progress, 503 once one of them has made none for stallAfter (ECS then
// replaces the task). A deliberate pause (SES or the state store failing)
// checks in as progress: replacing the task would not bring the dependency
// back. The answer says that sending is paused, and why.
type health struct {
	last func() time.Time
	// feedbackLast is the SES feedback consumer's progress; nil when it
	// does not run.
	feedbackLast func() time.Time
	// paused reports whether sending is paused and the last failure's
	// reason; nil for never.
	paused     func() (bool, string)
	now        func() time.Time
	stallAfter time.Duration
}

func (h health) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	now := h.now()
	last := h.last()
	status, code := "ok", http.StatusOK
	if now.Sub(last) > h.stallAfter {
		status, code = "stalled", http.StatusServiceUnavailable
	}
	body := struct {
		Status           string `json:"status"`
		LastPoll         string `json:"lastPoll"`
		FeedbackLastPoll string `json:"feedbackLastPoll,omitempty"`
		Sending          string `json:"sending"`
		PausedBy         string `json:"pausedBy,omitempty"`
		StallAfter       string `json:"stallAfter"`
	}{Status: status, LastPoll: last.UTC().Format(time.RFC3339Nano), Sending: "on", StallAfter: h.stallAfter.String()}
	if h.feedbackLast != nil {
		fb := h.feedbackLast()
		body.FeedbackLastPoll = fb.UTC().Format(time.RFC3339Nano)
		if now.Sub(fb) > h.stallAfter {
			body.Status, code = "stalled", http.StatusServiceUnavailable
		}
	}
	if h.paused != nil {
		if paused, why := h.paused(); paused {
			body.Sending, body.PausedBy = "paused", why
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(body)
}

// newHealthServer serves the health check path (the original design's,
// which the stacks check) and /healthz (the local pipeline asks it).
func newHealthServer(h health) *http.Server {
	mux := http.NewServeMux()
	mux.Handle("GET "+contract.SenderHealthPath, h)
	mux.Handle("GET "+contract.LivePath, h)
	return &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}
}
