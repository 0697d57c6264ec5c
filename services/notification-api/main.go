package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"herald/services/contract"
	"herald/services/internal/herald"
	"herald/services/internal/store"
)

func main() { herald.Main(string(contract.API), run) }

// awsOptions are the API's SDK settings. Few, short retries: a client is
// waiting, and a queue that is down must turn into a prompt 503, not a
// long stall. A 64 KiB write buffer: a SendMessageBatch and the keyed
// TransactWriteItems (about 1 KiB a Put) and BatchWriteItem leave in one
// write with their headers, not in two writes through a fresh copy buffer
// as with net/http's 4 KiB.
var awsOptions = herald.AWSOptions{MaxAttempts: 3, MaxBackoff: 200 * time.Millisecond, WriteBufferSize: 64 << 10}

// run is the whole program: the subcommand in args, configuration through
// getenv, logs and metrics to stdout, until ctx ends.
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "healthcheck":
			return herald.Healthcheck(ctx, getenv, contract.API, contract.LivePath)
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
	log, metrics := herald.Start(stdout, contract.API, cfg.Common, cfg.APIConfig)

	awsCfg, err := herald.LoadAWSConfig(ctx, cfg.Region, awsOptions)
	if err != nil {
		return err
	}
	d := deps{sqs: sqs.NewFromConfig(awsCfg, func(o *sqs.Options) {
		o.BaseEndpoint = herald.Endpoint(cfg.SQSEndpoint)
	})}
	secrets := secretsmanager.NewFromConfig(awsCfg, func(o *secretsmanager.Options) {
		o.BaseEndpoint = herald.Endpoint(cfg.SecretsManagerEndpoint)
	})
	if cfg.KeysSecretID != "" {
		d.secrets = secrets
	}
	if cfg.StoreTable != "" {
		db := store.NewDynamoDB(awsCfg, cfg.DynamoDBEndpoint)
		if d.state, d.ids, err = openStore(ctx, cfg, db, secrets); err != nil {
			return err
		}
		if d.rateBuckets, err = store.NewRateBuckets(db, cfg.StoreTable, time.Now); err != nil {
			return err
		}
	} else {
		log.Warn("no state store: Idempotency-Key and status lookups are refused (local use only)", "variable", contract.StoreTable.Name)
	}
	return serve(ctx, cfg, d, log, metrics)
}

// openStore reads the id secret and opens the state store. The secret's
// current version mints and checks ids; its previous version, if any, checks
// them too, so ids issued before a rotation stay the caller's (a second
// rotation within HERALD_STATUS_TTL drops the oldest: their GET is 404).
func openStore(ctx context.Context, cfg config, db store.Client, secrets secretsAPI) (stateStore, *store.IDs, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var keys [][]byte
	for _, stage := range []string{"AWSCURRENT", "AWSPREVIOUS"} {
		out, err := secrets.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(cfg.IDSecretID), VersionStage: aws.String(stage)})
		var nf *smtypes.ResourceNotFoundException
		switch {
		case stage == "AWSPREVIOUS" && errors.As(err, &nf):
			continue // never rotated
		case err != nil:
			return nil, nil, fmt.Errorf("read the id secret %s (%s), %s: %w", cfg.IDSecretID, contract.IDSecretID.Name, stage, err)
		}
		keys = append(keys, []byte(aws.ToString(out.SecretString)))
	}
	ids, err := store.NewIDs(keys...)
	if err != nil {
		return nil, nil, fmt.Errorf("the id secret %s (%s): %w", cfg.IDSecretID, contract.IDSecretID.Name, err)
	}
	st, err := store.New(db, store.Config{
		Table: cfg.StoreTable, IdempotencyTTL: cfg.IdempotencyTTL, StatusTTL: cfg.StatusTTL, IDs: ids, Clock: time.Now,
	})
	if err != nil {
		return nil, nil, err
	}
	return st, ids, nil
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
// metrics are written a last time. The key refresh and the metrics run in
// the background until then.
func serve(ctx context.Context, cfg config, d deps, log *slog.Logger, metrics *herald.Metrics) error {
	s, err := newServer(cfg, d, log, metrics)
	if err != nil {
		return err
	}
	if err := s.keys.refresh(ctx); err != nil {
		return fmt.Errorf("load API keys: %w", err)
	}
	log.Info("API keys loaded", "keyIds", s.keys.ids())

	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen on %s (%s): %w", cfg.HTTPAddr, contract.HTTPAddr.Name, err)
	}
	srv := s.httpServer()
	ln = s.limitConnections(ln, srv)
	log.Info("listening", "addr", ln.Addr().String())

	err = herald.Run(ctx, []func(context.Context) error{
		func(ctx context.Context) error {
			defer s.close()
			return herald.ServeHTTP(ctx, srv, ln, herald.Drain{
				Timeout: cfg.ShutdownTimeout, Log: log,
				// /readyz fails from now on, so the load balancer stops sending.
				Begin: func() { s.draining.Store(true) },
			})
		},
	},
		func(bg context.Context) { s.keys.run(bg, cfg.KeysRefresh) },
		func(bg context.Context) { metrics.Run(bg, cfg.MetricsInterval) },
	)
	if err != nil {
		return err
	}
	log.Info("stopped")
	return nil
}
