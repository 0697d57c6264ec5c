package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sesv2"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"herald/services/email-sender/consumer"
	"herald/services/email-sender/transport"
	"herald/services/internal/herald"
)

// sesFallbackSendRate is used when HERALD_SEND_RATE is 0 and SES's GetAccount
// cannot be read (no ses:GetAccount permission, an emulator without an
// account): 14 messages per second, the rate SES grants a new production
// account. Throttling above the real quota is retried anyway.
const sesFallbackSendRate = 14

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if len(args) > 1 {
		switch args[1] {
		case "healthcheck":
			return healthcheck(ctx, getenv)
		default:
			return fmt.Errorf("unknown subcommand %q: run with no argument, or healthcheck", args[1])
		}
	}
	cfg, err := readConfig(getenv)
	if err != nil {
		return err
	}
	out := herald.NewSyncWriter(stdout)
	log := herald.NewLogger(out, cfg.LogLevel, cfg.Env, serviceName)
	log.Info("starting", "config", cfg)

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	awsCfg, err := herald.LoadAWSConfig(ctx, cfg.Region, herald.AWSOptions{})
	if err != nil {
		return err
	}
	if id := getenv("AWS_ACCESS_KEY_ID"); id != "" {
		// The SDK reads these from the process environment too; reading them
		// through getenv keeps run's environment in its caller's hands.
		awsCfg.Credentials = credentials.NewStaticCredentialsProvider(id, getenv("AWS_SECRET_ACCESS_KEY"), getenv("AWS_SESSION_TOKEN"))
	}
	sqsClient := sqs.NewFromConfig(awsCfg, func(o *sqs.Options) {
		o.BaseEndpoint = herald.Endpoint(getenv, herald.EnvEndpointSQS)
	})

	sender, sendRate, closeSender, err := newTransport(ctx, cfg, awsCfg, getenv, log)
	if err != nil {
		return err
	}
	defer closeSender()

	var metrics *herald.Metrics
	if cfg.MetricsInterval > 0 {
		metrics = herald.NewMetrics(out, cfg.Env, serviceName)
	}
	deps := consumer.Deps{SQS: sqsClient, Sender: sender, Logger: log, Metrics: metrics}
	if sendRate > 0 {
		lim, err := consumer.NewAIMD(consumer.AIMDConfig{Quota: sendRate, Tasks: cfg.SenderTasks})
		if err != nil {
			return err
		}
		deps.Limiter = lim
		log.Info("send rate adaptive", "accountPerSecond", sendRate, "senderTasks", cfg.SenderTasks, "startPerSecond", lim.Rate())
	} else {
		log.Info("send rate not limited")
	}
	c, err := consumer.New(consumer.Config{
		QueueURL:      cfg.QueueURL,
		DeadLetterURL: cfg.DLQURL,
		Pollers:       cfg.Pollers,
		Workers:       cfg.Workers,
		ReceiveBatch:  cfg.ReceiveBatch,
		DeleteBatch:   cfg.DeleteBatch,
		WaitTime:      cfg.WaitTime,
		Visibility:    cfg.Visibility,
		SendTimeout:   cfg.SendTimeout,
		RetryBase:     cfg.RetryBase,
		RetryMax:      cfg.RetryMax,
		RetryWindow:   cfg.RetryWindow,
		// Leave a moment of the deadline for the last metrics and the exit.
		ShutdownTimeout: cfg.ShutdownTimeout - min(cfg.ShutdownTimeout/10, time.Second),
	}, deps)
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen on HERALD_HTTP_ADDR %s: %w", cfg.HTTPAddr, err)
	}
	srv := newHealthServer(health{last: c.LastProgress, now: time.Now, stallAfter: cfg.StallAfter})
	served := make(chan struct{})
	var serveErr error
	go func() {
		defer close(served)
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			serveErr = fmt.Errorf("health server: %w", err)
			cancel(serveErr)
		}
	}()
	log.Info("health endpoint listening", "addr", ln.Addr().String())
	// The health server goes when the drain starts: ECS no longer checks a
	// stopping task.
	stopHTTP := context.AfterFunc(ctx, func() {
		sctx, scancel := context.WithTimeout(context.Background(), time.Second)
		defer scancel()
		srv.Shutdown(sctx)
	})
	defer stopHTTP()

	metricsCtx, stopMetrics := context.WithCancel(context.WithoutCancel(ctx))
	metricsDone := make(chan struct{})
	go func() {
		defer close(metricsDone)
		metrics.Run(metricsCtx, cfg.MetricsInterval)
	}()

	runErr := c.Run(ctx)
	srv.Close()
	<-served
	stopMetrics()
	<-metricsDone
	if serveErr != nil {
		return errors.Join(serveErr, runErr)
	}
	log.Info("stopped")
	return runErr
}

// newTransport builds the configured sender and decides its send rate
// (0 = unlimited).
func newTransport(ctx context.Context, cfg config, awsCfg aws.Config, getenv func(string) string, log *slog.Logger) (consumer.Sender, float64, func(), error) {
	switch cfg.Transport {
	case "smtp":
		username, password := cfg.SMTPUsername, cfg.SMTPPassword
		if cfg.SMTPSecretID != "" {
			sm := secretsmanager.NewFromConfig(awsCfg, func(o *secretsmanager.Options) {
				o.BaseEndpoint = herald.Endpoint(getenv, herald.EnvEndpointSecretsManager)
			})
			var err error
			username, password, err = smtpCredentials(ctx, sm, cfg.SMTPSecretID)
			if err != nil {
				return nil, 0, nil, err
			}
		}
		smtpCfg := transport.SMTPConfig{
			Addr:      cfg.SMTPAddr,
			PlainText: cfg.SMTPTLS == "none",
			Username:  username,
			Password:  password,
			MaxIdle:   cfg.Workers,
		}
		if host, err := os.Hostname(); err == nil {
			smtpCfg.HelloName = host
		}
		if cfg.SMTPCAFile != "" {
			pool, err := certPool(cfg.SMTPCAFile)
			if err != nil {
				return nil, 0, nil, err
			}
			smtpCfg.RootCAs = pool
		}
		s, err := transport.NewSMTP(smtpCfg)
		if err != nil {
			return nil, 0, nil, fmt.Errorf("HERALD_SMTP_ADDR: %w", err)
		}
		return s, cfg.SendRate, func() { s.Close() }, nil
	default:
		client := sesv2.NewFromConfig(awsCfg, func(o *sesv2.Options) {
			o.BaseEndpoint = herald.Endpoint(getenv, herald.EnvEndpointSESv2)
			// No SDK retries: the consumer retries, and its limiter and
			// breaker must see every throttle and failure. (The SDK's retry
			// of a timed-out send could also send a mail twice.)
			o.Retryer = aws.NopRetryer{}
		})
		return transport.NewSES(client, cfg.SESConfigSet), sesSendRate(ctx, cfg.SendRate, client, log), func() {}, nil
	}
}

// sesSendRate is the configured rate, or else the account's maximum send
// rate, or else sesFallbackSendRate: the quota of the account and region,
// which every sender task shares (the limiter divides it).
func sesSendRate(ctx context.Context, configured float64, client transport.AccountAPI, log *slog.Logger) float64 {
	if configured > 0 {
		return configured
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	r, err := transport.AccountSendRate(ctx, client)
	if err != nil || math.IsInf(r, 0) || math.IsNaN(r) {
		log.Warn("SES send quota unknown; using the fallback send rate", "err", err, "perSecond", sesFallbackSendRate)
		return sesFallbackSendRate
	}
	log.Info("SES account send quota read", "maxSendRate", r)
	return r
}

// secretGetter is the Secrets Manager call the SMTP credentials need.
type secretGetter interface {
	GetSecretValue(ctx context.Context, in *secretsmanager.GetSecretValueInput, optFns ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error)
}

// smtpCredentials reads {"username","password"} from a Secrets Manager secret.
func smtpCredentials(ctx context.Context, sm secretGetter, id string) (string, string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(id)})
	if err != nil {
		return "", "", fmt.Errorf("HERALD_SMTP_SECRET_ID: read secret: %w", err)
	}
	var v struct {
		Username string `json:"username"`
		Password string `json:"password"`
	}
	if err := json.Unmarshal([]byte(aws.ToString(out.SecretString)), &v); err != nil {
		// The JSON error could quote the secret: leave it out.
		return "", "", errors.New(`HERALD_SMTP_SECRET_ID: the secret is not JSON {"username","password"}`)
	}
	if v.Username == "" || v.Password == "" {
		return "", "", errors.New("HERALD_SMTP_SECRET_ID: the secret needs both username and password")
	}
	return v.Username, v.Password, nil
}

// certPool is the system roots plus the PEM certificates in file (a private
// relay's CA).
func certPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("HERALD_SMTP_CA_FILE: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("HERALD_SMTP_CA_FILE: no PEM certificate in %s", file)
	}
	return pool, nil
}
