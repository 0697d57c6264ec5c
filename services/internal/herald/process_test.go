package herald

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"herald/services/contract"
)

func TestHealthURL(t *testing.T) {
	for addr, want := range map[string]string{":8081": "http://127.0.0.1:8081/healthz", "0.0.0.0:9000": "http://127.0.0.1:9000/healthz"} {
		if got, err := HealthURL(addr, contract.LivePath); err != nil || got != want {
			t.Errorf("HealthURL(%q) = %q, %v", addr, got, err)
		}
	}
	if _, err := HealthURL("8080", "/"); err == nil || !strings.Contains(err.Error(), "HERALD_HTTP_ADDR") {
		t.Errorf("a bad address: %v", err)
	}
}

// TestRunStopsBackgroundAfterMain: the background parts outlive the main
// parts' drain, and a failing main part stops the others.
func TestRunStopsBackgroundAfterMain(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var drained, backgroundSawDrain atomic.Bool
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, []func(context.Context) error{func(ctx context.Context) error {
			<-ctx.Done()
			drained.Store(true)
			return nil
		}}, func(bg context.Context) {
			<-bg.Done()
			backgroundSawDrain.Store(drained.Load())
		})
	}()
	cancel()
	if err := <-done; err != nil || !backgroundSawDrain.Load() {
		t.Errorf("Run = %v; background stopped after the drain: %v", err, backgroundSawDrain.Load())
	}

	boom := errors.New("boom")
	err := Run(context.Background(), []func(context.Context) error{
		func(context.Context) error { return boom },
		func(ctx context.Context) error { <-ctx.Done(); return nil },
	})
	if !errors.Is(err, boom) {
		t.Errorf("Run = %v, want the failing part's error", err)
	}
}

func TestServeHTTPDrains(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	started := make(chan struct{})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
		w.WriteHeader(http.StatusTeapot)
	})}
	ctx, cancel := context.WithCancel(context.Background())
	var began atomic.Bool
	served := make(chan error, 1)
	go func() {
		served <- ServeHTTP(ctx, srv, ln, Drain{Timeout: 10 * time.Second, Begin: func() { began.Store(true) }})
	}()
	answered := make(chan int, 1)
	go func() {
		resp, err := http.Get("http://" + ln.Addr().String())
		if err != nil {
			answered <- 0
			return
		}
		resp.Body.Close()
		answered <- resp.StatusCode
	}()
	<-started
	cancel()
	close(release)
	if code := <-answered; code != http.StatusTeapot {
		t.Errorf("the request in flight got %d", code)
	}
	if err := <-served; err != nil || !began.Load() {
		t.Errorf("ServeHTTP = %v, drain began %v", err, began.Load())
	}
}
