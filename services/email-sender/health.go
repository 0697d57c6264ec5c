package main

import (
	"encoding/json"
	"net/http"
	"time"

	"herald/services/contract"
)

// health answers the liveness checks: 200 while the poll loop makes
// progress, 503 once it has made none for stallAfter (ECS then replaces the
// task).
type health struct {
	last       func() time.Time
	now        func() time.Time
	stallAfter time.Duration
}

func (h health) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	last := h.last()
	status, code := "ok", http.StatusOK
	if h.now().Sub(last) > h.stallAfter {
		status, code = "stalled", http.StatusServiceUnavailable
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(struct {
		Status     string `json:"status"`
		LastPoll   string `json:"lastPoll"`
		StallAfter string `json:"stallAfter"`
	}{status, last.UTC().Format(time.RFC3339Nano), h.stallAfter.String()})
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
