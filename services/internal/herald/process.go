package herald

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"herald/services/contract"
)

// Both services, and herald-ops, have one entry-point shape: main calls
// Main with run; run(ctx, args, getenv, stdout) is the whole program, its
// subcommand in args, its configuration read once through the contract,
// logs and metrics to stdout, until ctx ends; Start makes its logger and
// metrics; Run wires its parts.

// Program is a binary's run.
type Program func(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error

// Main runs run with the process's arguments (without the program name),
// environment and stdout, under a context that ends on SIGINT or SIGTERM,
// and exits 1 with the error, prefixed with name, when it fails.
func Main(name string, run Program) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
}

// Start makes a service's one JSON logger and its metrics (nil when
// common.MetricsInterval is 0), both writing whole lines to stdout, and
// logs the configuration it starts with.
func Start(stdout io.Writer, svc contract.Service, common contract.Common, config slog.LogValuer) (*slog.Logger, *Metrics) {
	out := NewSyncWriter(stdout)
	log := NewLogger(out, common.LogLevel, common.Environment, string(svc))
	log.Info("starting", "config", config)
	var metrics *Metrics
	if common.MetricsInterval > 0 {
		metrics = NewMetrics(out, common.Environment, svc)
	}
	return log, metrics
}

// Run runs a service's parts. Each main part runs until ctx ends, then
// drains and returns; when one fails, the others' context ends too. The
// background parts (metrics, refresh loops) run until every main part has
// returned, so the last metrics are written after the drain. Run returns
// the first main part's error.
func Run(ctx context.Context, main []func(context.Context) error, background ...func(context.Context)) error {
	bg, stopBackground := context.WithCancel(context.WithoutCancel(ctx))
	var loops sync.WaitGroup
	for _, b := range background {
		loops.Go(func() { b(bg) })
	}
	g, gctx := errgroup.WithContext(ctx)
	for _, m := range main {
		g.Go(func() error { return m(gctx) })
	}
	err := g.Wait()
	stopBackground()
	loops.Wait()
	return err
}

// Drain says how ServeHTTP stops.
type Drain struct {
	// Timeout bounds the wait for requests in flight.
	Timeout time.Duration
	// Begin, when set, runs first (e.g. to fail readiness checks).
	Begin func()
	// Log, when set, gets "shutting down" and "stopped".
	Log *slog.Logger
}

// ServeHTTP serves srv on ln until ctx ends, then shuts it down within
// d.Timeout: requests in flight finish. A server that fails on its own is
// an error.
//
// A connection that never sent a request (a client's spare connection, a
// load balancer's pre-opened one) does not hold the drain: net/http's
// Shutdown waits up to 5 s for a new connection's first request, so when
// the timeout ends with only such connections left, or idle ones, they are
// closed and the drain counts as clean, since no request was lost.
func ServeHTTP(ctx context.Context, srv *http.Server, ln net.Listener, d Drain) error {
	conns := trackConns(srv)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	if d.Log != nil {
		d.Log.Info("shutting down", "timeout", d.Timeout.String())
	}
	if d.Begin != nil {
		d.Begin()
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.Timeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if errors.Is(err, context.DeadlineExceeded) {
		if active, waiting := conns.count(); active == 0 {
			srv.Close()
			if d.Log != nil && waiting > 0 {
				d.Log.Info("closed connections that sent no request", "connections", waiting)
			}
			err = nil
		}
	}
	<-served
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shutdown within %s: %w", d.Timeout, err)
	}
	return nil
}

// connStates follows a server's connections by state.
type connStates struct {
	mu    sync.Mutex
	state map[net.Conn]http.ConnState
}

// trackConns follows srv's connections, keeping any ConnState hook it has.
func trackConns(srv *http.Server) *connStates {
	c := &connStates{state: map[net.Conn]http.ConnState{}}
	next := srv.ConnState
	srv.ConnState = func(conn net.Conn, st http.ConnState) {
		c.mu.Lock()
		switch st {
		case http.StateClosed, http.StateHijacked:
			delete(c.state, conn)
		default:
			c.state[conn] = st
		}
		c.mu.Unlock()
		if next != nil {
			next(conn, st)
		}
	}
	return c
}

// count is how many connections have a request in progress (active), and
// how many wait for one (new or idle).
func (c *connStates) count() (active, waiting int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, st := range c.state {
		if st == http.StateActive {
			active++
		} else {
			waiting++
		}
	}
	return active, waiting
}

// Healthcheck is the `healthcheck` subcommand of both binaries: the
// container health check of a distroless image, which has no shell and no
// curl. It asks path of the running service on loopback, at the port of its
// HERALD_HTTP_ADDR, and fails unless it answers 200.
func Healthcheck(ctx context.Context, getenv func(string) string, svc contract.Service, path string) error {
	r := contract.NewReader(getenv)
	addr := contract.HTTPAddr.Read(r, svc)
	if err := r.Err(); err != nil {
		return err
	}
	url, err := HealthURL(addr, path)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := GetOK(ctx, http.DefaultClient, url); err != nil {
		return fmt.Errorf("health check: %w", err)
	}
	return nil
}

// GetOK asks url with GET through client and fails unless it answers 200.
// The body is read to its end, so the connection can serve the next ask.
func GetOK(ctx context.Context, client *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %d", url, resp.StatusCode)
	}
	return nil
}

// HealthURL is path on loopback, at the port of a listen address.
func HealthURL(addr, path string) (string, error) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("%s %q: %w", contract.HTTPAddr.Name, addr, err)
	}
	return "http://" + net.JoinHostPort("127.0.0.1", port) + path, nil
}
