package main

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

	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"herald/services/internal/herald"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "notification-api:", err)
		os.Exit(1)
	}
}

// run is the whole program: the subcommand in args, configuration through
// getenv, logs and metrics to stdout, until ctx ends.
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "healthcheck":
			return herald.Healthcheck(ctx, getenv, defaultAddr)
		case "keygen":
			return keygen(args[1:], stdout)
		default:
			return fmt.Errorf("unknown subcommand %q; use no argument to serve, healthcheck, or keygen [key-id]", args[0])
		}
	}
	cfg, err := readConfig(getenv)
	if err != nil {
		return err
	}
	out := herald.NewSyncWriter(stdout)
	log := herald.NewLogger(out, cfg.LogLevel, cfg.Env, serviceName)
	log.Info("starting", "config", cfg.logValue())

	// Few, short SDK retries: a client is waiting, and a queue that is down
	// must turn into a prompt 503, not a long stall.
	awsCfg, err := herald.LoadAWSConfig(ctx, cfg.Region, herald.AWSOptions{MaxAttempts: 3, MaxBackoff: 200 * time.Millisecond})
	if err != nil {
		return err
	}
	d := deps{sqs: sqs.NewFromConfig(awsCfg, func(o *sqs.Options) {
		o.BaseEndpoint = herald.Endpoint(getenv, herald.EnvEndpointSQS)
	})}
	if cfg.KeysSecretID != "" {
		d.secrets = secretsmanager.NewFromConfig(awsCfg, func(o *secretsmanager.Options) {
			o.BaseEndpoint = herald.Endpoint(getenv, herald.EnvEndpointSecretsManager)
		})
	}
	var metrics *herald.Metrics
	if cfg.MetricsInterval > 0 {
		metrics = herald.NewMetrics(out, cfg.Env, serviceName)
	}
	return serve(ctx, cfg, d, log, metrics)
}

// httpServer is the API's HTTP server with its timeouts.
func (s *server) httpServer() *http.Server {
	return &http.Server{
		Handler:           s.handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		// Above the enqueue deadline, so a 503 is always written.
		WriteTimeout:   s.cfg.EnqueueTimeout + 10*time.Second,
		IdleTimeout:    120 * time.Second,
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
}

// limitConnections caps ln at HERALD_MAX_CONNECTIONS open connections; at
// the cap srv stops keeping connections alive until a slot is free, and a
// warning is logged (at most one each 10 s).
func (s *server) limitConnections(ln net.Listener, srv *http.Server) *limitListener {
	capLog := newLogSampler(0.1, 1)
	return newLimitListener(ln, s.cfg.MaxConnections, func(full bool) {
		srv.SetKeepAlivesEnabled(!full)
		if !full {
			return
		}
		if ok, suppressed := capLog.allow(s.now()); ok {
			s.log.Warn("connection cap reached: new connections wait, idle ones are closed",
				"maxConnections", s.cfg.MaxConnections, "suppressed", suppressed)
		}
	})
}

// serve loads the API keys, listens on cfg.HTTPAddr and serves until ctx
// ends, then drains: requests in flight finish, gathered sends are flushed,
// metrics are written a last time.
func serve(ctx context.Context, cfg config, d deps, log *slog.Logger, metrics *herald.Metrics) error {
	s := newServer(cfg, d, log, metrics)
	if err := s.keys.refresh(ctx); err != nil {
		return fmt.Errorf("load API keys: %w", err)
	}
	log.Info("API keys loaded", "keyIds", s.keys.ids())

	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen on %s (HERALD_HTTP_ADDR): %w", cfg.HTTPAddr, err)
	}
	srv := s.httpServer()
	ln = s.limitConnections(ln, srv)

	bg, stopBackground := context.WithCancel(context.WithoutCancel(ctx))
	var background sync.WaitGroup
	background.Go(func() { s.keys.run(bg, cfg.KeysRefresh) })
	background.Go(func() { metrics.Run(bg, cfg.MetricsInterval) })
	defer func() {
		stopBackground()
		background.Wait()
	}()

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	log.Info("listening", "addr", ln.Addr().String())

	select {
	case err := <-serveErr:
		s.enq.close()
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down", "timeout", cfg.ShutdownTimeout)
	s.draining.Store(true)
	shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	err = srv.Shutdown(shutdownCtx)
	s.enq.close()
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shutdown within %s: %w", cfg.ShutdownTimeout, err)
	}
	log.Info("stopped")
	return nil
}
