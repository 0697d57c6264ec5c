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

// TestServeHTTPDrainIgnoresSilentConnections: a connection that never sent
// a request holds net/http's Shutdown for its first 5 s; at the drain's
// timeout it is closed and the drain is clean, while a request still in
// flight makes it an error.
func TestServeHTTPDrainIgnoresSilentConnections(t *testing.T) {
	for _, inFlight := range []bool{false, true} {
		t.Run(map[bool]string{false: "silent connection", true: "request in flight"}[inFlight], func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			release := make(chan struct{})
			defer close(release)
			started := make(chan struct{})
			srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				close(started)
				<-release
			})}
			var hooked atomic.Int32
			srv.ConnState = func(net.Conn, http.ConnState) { hooked.Add(1) }
			ctx, cancel := context.WithCancel(context.Background())
			served := make(chan error, 1)
			go func() { served <- ServeHTTP(ctx, srv, ln, Drain{Timeout: 300 * time.Millisecond}) }()
			silent, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer silent.Close()
			if inFlight {
				go func() {
					if resp, err := http.Get("http://" + ln.Addr().String()); err == nil {
						resp.Body.Close()
					}
				}()
				<-started
			}
			// The server has seen the silent connection once its state hook
			// ran for it (and for the request's, when there is one).
			for deadline := time.Now().Add(5 * time.Second); hooked.Load() < 1; {
				if time.Now().After(deadline) {
					t.Fatal("the server never saw the connection")
				}
				time.Sleep(5 * time.Millisecond)
			}
			cancel()
			select {
			case err := <-served:
				if inFlight != (err != nil) {
					t.Fatalf("ServeHTTP = %v with a request in flight %v", err, inFlight)
				}
			case <-time.After(4 * time.Second):
				t.Fatal("the drain waited for the silent connection past its timeout")
			}
			if !inFlight {
				silent.SetReadDeadline(time.Now().Add(5 * time.Second))
				if _, err := silent.Read(make([]byte, 1)); err == nil {
					t.Error("the silent connection is still open")
				}
			}
		})
	}
}
