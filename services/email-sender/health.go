package main

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"herald/services/internal/herald"
)

// The sender's health check path is the original design's; /healthz stays
// an alias (the local pipeline and older checks ask it). The stacks check
// the same path (stacks/herald.go senderHealthPath).
const (
	healthPath  = "/api/notification/send-email"
	healthAlias = "/healthz"
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

// newHealthServer serves the health check path and its alias.
func newHealthServer(h health) *http.Server {
	mux := http.NewServeMux()
	mux.Handle("GET "+healthPath, h)
	mux.Handle("GET "+healthAlias, h)
	return &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}
}

// healthcheck is the `healthcheck` subcommand (the container health check):
// it asks the running sender's health check path.
func healthcheck(ctx context.Context, getenv func(string) string) error {
	return herald.HealthcheckAt(ctx, getenv, defaultAddr, healthPath)
}
