package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"herald/services/notification-api/apitest"
)

// liveServer serves h's handler as serve does (same http.Server, the
// connection cap) on a free loopback port until the test ends. states, when
// set, is told each connection's state change.
func liveServer(t *testing.T, h *harness, states func(net.Conn, http.ConnState)) (addr string, ln *limitListener) {
	t.Helper()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := h.srv.httpServer()
	srv.ConnState = states
	ln = h.srv.limitConnections(raw, srv)
	done := make(chan struct{})
	go func() { srv.Serve(ln); close(done) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return raw.Addr().String(), ln
}

// TestEarlyAnswerClosesTheConnection: a request answered before its body is
// read (no key, a wrong key, not JSON, over the size) gets its answer at
// once, however slowly the body comes, and the server closes the
// connection instead of waiting for the rest. A request read in full keeps
// its connection.
func TestEarlyAnswerClosesTheConnection(t *testing.T) {
	h := newHarness(t, testConfig(), nil, deps{})
	addr, _ := liveServer(t, h, nil)
	partial := `{"to":["alice@example.com"],"subject":"slow`
	for _, c := range []struct {
		name    string
		headers string
		status  int
	}{
		{"no key, declared length", "Content-Type: application/json\r\nContent-Length: 100000\r\n", 401},
		{"wrong key, chunked", "Authorization: Bearer hk_guess\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n", 401},
		{"not JSON", "Authorization: Bearer " + testKey + "\r\nContent-Type: text/plain\r\nContent-Length: 100000\r\n", 415},
		{"declared over the limit", "Authorization: Bearer " + testKey + "\r\nContent-Type: application/json\r\nContent-Length: 10000000\r\n", 413},
	} {
		t.Run(c.name, func(t *testing.T) {
			rc := apitest.Dial(t, addr)
			body := partial
			if strings.Contains(c.headers, "chunked") {
				body = fmt.Sprintf("%x\r\n%s\r\n", len(partial), partial)
			}
			// The headers and the start of a body that never ends.
			rc.Send("POST /api/notifications HTTP/1.1\r\nHost: herald\r\n" + c.headers + "\r\n" + body)
			resp := rc.Reply()
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, c.status)
			}
			if !resp.Close {
				t.Errorf("reply without Connection: close (header %q)", resp.Header.Get("Connection"))
			}
			if !rc.ClosedByServer(apitest.ReplyWait) {
				t.Errorf("the server kept the connection open %s after answering", apitest.ReplyWait)
			}
		})
	}
	t.Run("a body read in full keeps the connection", func(t *testing.T) {
		rc := apitest.Dial(t, addr)
		body := valid(nil)
		for i := range 2 {
			rc.Send("POST /api/notifications HTTP/1.1\r\nHost: herald\r\nAuthorization: Bearer " + testKey +
				"\r\nContent-Type: application/json\r\nContent-Length: " + fmt.Sprint(len(body)) + "\r\n\r\n" + body)
			resp := rc.Reply()
			if resp.StatusCode != 202 || resp.Close {
				t.Fatalf("request %d on one connection: status %d, close %v", i, resp.StatusCode, resp.Close)
			}
		}
	})
}

// TestConnectionCap: at HERALD_MAX_CONNECTIONS open connections a new one
// waits, idle keep-alive connections are closed to make room, and keep-alive
// comes back after.
func TestConnectionCap(t *testing.T) {
	cfg := testConfig()
	cfg.MaxConnections = 2
	h := newHarness(t, cfg, nil, deps{})
	idleNow := make(chan struct{}, 16)
	addr, ln := liveServer(t, h, func(_ net.Conn, s http.ConnState) {
		if s == http.StateIdle {
			idleNow <- struct{}{}
		}
	})
	get := "GET /healthz HTTP/1.1\r\nHost: herald\r\n\r\n"

	// Given two idle keep-alive connections (idle for the server too, not
	// only answered), the cap is reached.
	idle := []*apitest.Conn{apitest.Dial(t, addr), apitest.Dial(t, addr)}
	for _, rc := range idle {
		rc.Send(get)
		if resp := rc.Reply(); resp.StatusCode != 200 || resp.Close {
			t.Fatalf("status %d, close %v", resp.StatusCode, resp.Close)
		}
		<-idleNow
	}
	if n := ln.open(); n != 2 {
		t.Fatalf("%d connections hold a slot, want 2", n)
	}
	// When a third client comes, it is served: the idle ones are closed.
	third := apitest.Dial(t, addr)
	third.Send(get)
	if resp := third.Reply(); resp.StatusCode != 200 {
		t.Fatalf("third connection: status %d", resp.StatusCode)
	}
	for i, rc := range idle {
		if !rc.ClosedByServer(apitest.ReplyWait) {
			t.Errorf("idle connection %d still open at the cap", i)
		}
	}
	if !strings.Contains(h.log.String(), "connection cap reached") {
		t.Errorf("no warning logged at the cap:\n%s", h.log)
	}
	// Then, below the cap, connections are kept alive again.
	fourth := apitest.Dial(t, addr)
	for i := range 2 {
		fourth.Send(get)
		if resp := fourth.Reply(); resp.StatusCode != 200 || resp.Close {
			t.Fatalf("request %d after the cap: status %d, close %v", i, resp.StatusCode, resp.Close)
		}
	}
}

// TestLimitListenerWaitsForASlot: with every slot taken, a new connection
// waits in Accept, which says so, and goes on when a connection closes;
// Close ends a waiting Accept.
func TestLimitListenerWaitsForASlot(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	full := make(chan bool, 4)
	ln := newLimitListener(raw, 1, func(f bool) { full <- f })
	defer ln.Close()
	for range 4 {
		c, err := net.Dial("tcp", raw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	first, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.Close()
		}
		accepted <- err
	}()
	if f := <-full; !f {
		t.Fatal("atCap(false) before atCap(true)")
	}
	select {
	case err := <-accepted:
		t.Fatalf("Accept returned (%v) with the only slot taken", err)
	default:
	}
	first.Close()
	first.Close() // a second Close gives back no second slot
	if err := <-accepted; err != nil {
		t.Fatal(err)
	}
	if f := <-full; f {
		t.Fatal("no atCap(false) once a slot was free")
	}
	if n := ln.open(); n != 0 {
		t.Errorf("%d slots held after both closed", n)
	}

	// At the cap again (the third connection) with a fourth waiting, Close
	// ends the waiting Accept.
	if _, err := ln.Accept(); err != nil {
		t.Fatal(err)
	}
	go func() { _, err := ln.Accept(); accepted <- err }()
	<-full
	ln.Close()
	if err := <-accepted; !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Close: %v, want net.ErrClosed", err)
	}
}

// TestUnauthenticatedLogIsSampled: requests refused without a valid key are
// logged at most unauthLogBurst at once and unauthLogRate a second after,
// with the number left out; every one is still counted, and authenticated
// requests are all logged.
func TestUnauthenticatedLogIsSampled(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1700000000, 0)}
	h := newHarness(t, testConfig(), nil, deps{now: clock.now})
	const n = 50
	for i := range n {
		key := "-"
		if i%2 == 1 {
			key = "Bearer hk_guess"
		}
		if rec := h.do(http.MethodPost, "/api/notifications", map[string]string{"Authorization": key}, valid(nil)); rec.Code != 401 {
			t.Fatalf("status %d", rec.Code)
		}
	}
	h.do(http.MethodGet, "/wp-login.php", map[string]string{"Authorization": "-"}, "")
	for range 3 {
		h.do(http.MethodPost, "/api/notifications", nil, valid(nil))
	}
	clock.advance(time.Second)
	h.do(http.MethodPost, "/api/notifications", map[string]string{"Authorization": "-"}, valid(nil))

	var unauth, authed int
	var suppressed []float64
	for _, l := range strings.Split(strings.TrimSpace(h.log.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		if m["msg"] != "request" {
			continue
		}
		if m["keyId"] != nil {
			authed++
			continue
		}
		unauth++
		if s, ok := m["suppressed"].(float64); ok {
			suppressed = append(suppressed, s)
		}
	}
	// 10 at once; the 41 others (40 posts, one 404) left out; one more a
	// second later, saying so.
	if unauth != unauthLogBurst+1 || authed != 3 {
		t.Errorf("%d unauthenticated lines (want %d), %d authenticated (want 3)", unauth, unauthLogBurst+1, authed)
	}
	if len(suppressed) != 1 || suppressed[0] != n+1-unauthLogBurst {
		t.Errorf("suppressed counts %v, want [%d]", suppressed, n+1-unauthLogBurst)
	}
	if got := h.metrics.Totals()["Rejected.auth"]; got != n+1 {
		t.Errorf("Rejected.auth = %v, want %d", got, n+1)
	}
}
