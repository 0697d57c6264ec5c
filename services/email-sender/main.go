// Command email-sender consumes the notification queue and sends each
// notification through SES v2 (or an SMTP relay). Configuration and contracts:
// services/README.md.
package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sesv2"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"herald/services/contract"
	"herald/services/email-sender/consumer"
	"herald/services/email-sender/feedback"
	"herald/services/email-sender/transport"
	"herald/services/internal/herald"
	"herald/services/internal/store"
)

// sesFallbackSendRate is used when HERALD_SEND_RATE is 0 and SES's GetAccount
// cannot be read (no ses:GetAccount permission, an emulator without an
// account): 14 messages per second, the rate SES grants a new production
// account. Throttling above the real quota is retried anyway.
const sesFallbackSendRate = 14

func main() { herald.Main(string(contract.Sender), run) }

// run is the whole program: the subcommand in args, configuration through
// getenv, logs and metrics to stdout, until ctx ends.
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "healthcheck":
			return herald.Healthcheck(ctx, getenv, contract.Sender, contract.SenderHealthPath)
		default:
			return fmt.Errorf("unknown subcommand %q; use no argument to run, or healthcheck", args[0])
		}
	}
	cfg, err := readConfig(getenv)
	if err != nil {
		return err
	}
	log, metrics := herald.Start(stdout, contract.Sender, cfg.Common, cfg)

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
		o.BaseEndpoint = herald.Endpoint(cfg.SQSEndpoint)
	})

	sender, sendRate, closeSender, err := newTransport(ctx, cfg, awsCfg, log)
	if err != nil {
		return err
	}
	defer closeSender()

	deps := consumer.Deps{SQS: sqsClient, Sender: sender, Logger: log, Metrics: metrics}
	var st *store.Store
	if cfg.StoreTable != "" {
		st, err = store.New(store.NewDynamoDB(awsCfg, cfg.DynamoDBEndpoint), store.Config{
			Table: cfg.StoreTable,
			// The sender writes no Idempotency-Key records; the store
			// only holds this below StatusTTL.
			IdempotencyTTL: contract.IdempotencyTTL.Min,
			StatusTTL:      cfg.StatusTTL,
			Clock:          time.Now,
		})
		if err != nil {
			return err
		}
		deps.Store = st
		log.Info("deduplicating by notification id", "table", cfg.StoreTable)
	} else {
		log.Warn("no state store: every message received is sent, a redelivered one again (local use only)", "setting", contract.StoreTable.Name)
	}
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
		AllowedFrom:   cfg.AllowedFrom,
		Pollers:       cfg.Pollers,
		Workers:       cfg.Workers,
		ReceiveBatch:  cfg.ReceiveBatch,
		DeleteBatch:   cfg.DeleteBatch,
		BatchLinger:   deleteLinger,
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
		return fmt.Errorf("listen on %s %s: %w", contract.HTTPAddr.Name, cfg.HTTPAddr, err)
	}
	parts := []func(context.Context) error{c.Run}
	h := health{last: c.LastProgress, paused: c.Paused, now: time.Now, stallAfter: cfg.StallAfter}
	if cfg.Feedback.QueueURL != "" {
		fb, err := newFeedback(cfg.Feedback, sqsClient, st, log, metrics)
		if err != nil {
			return err
		}
		parts = append(parts, fb.Run)
		h.feedbackLast = fb.LastProgress
	}
	srv := newHealthServer(h)
	log.Info("health endpoint listening", "addr", ln.Addr().String())

	err = herald.Run(ctx, append(parts,
		// The health server goes when the drain starts: ECS no longer checks
		// a stopping task.
		func(ctx context.Context) error {
			if err := herald.ServeHTTP(ctx, srv, ln, herald.Drain{Timeout: time.Second}); err != nil {
				return fmt.Errorf("health server: %w", err)
			}
			return nil
		},
	), func(bg context.Context) { metrics.Run(bg, cfg.MetricsInterval) })
	if err != nil {
		return err
	}
	log.Info("stopped")
	return nil
}

// newFeedback makes the SES feedback consumer (FEEDBACK.md): the events of
// the feedback queue applied to the notifications' status in the store.
func newFeedback(cfg contract.FeedbackConfig, q feedback.SQS, st *store.Store, log *slog.Logger, metrics *herald.Metrics) (*feedback.Consumer, error) {
	log = log.With("component", "feedback")
	proc, err := feedback.NewProcessor(st, feedback.ProcessorConfig{TopicARN: cfg.TopicARN, Logger: log, Metrics: metrics})
	if err != nil {
		return nil, err
	}
	return feedback.NewConsumer(feedback.ConsumerConfig{
		QueueURL:       cfg.QueueURL,
		DeadLetterURL:  cfg.DLQURL,
		Pollers:        cfg.Pollers,
		WaitTime:       cfg.WaitTime,
		Visibility:     cfg.Visibility,
		ProcessTimeout: cfg.ProcessTimeout,
		RetryBase:      cfg.RetryBase,
		RetryMax:       cfg.RetryMax,
	}, q, proc, log, metrics)
}

// newTransport builds the configured sender and decides its send rate
// (0 = unlimited).
func newTransport(ctx context.Context, cfg config, awsCfg aws.Config, log *slog.Logger) (consumer.Sender, float64, func(), error) {
	switch cfg.Transport {
	case "smtp":
		username, password := cfg.SMTPUsername, cfg.SMTPPassword
		if cfg.SMTPSecretID != "" {
			sm := secretsmanager.NewFromConfig(awsCfg, func(o *secretsmanager.Options) {
				o.BaseEndpoint = herald.Endpoint(cfg.SecretsManagerEndpoint)
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
			return nil, 0, nil, fmt.Errorf("%s: %w", contract.SMTPAddr.Name, err)
		}
		return s, cfg.SendRate, func() { s.Close() }, nil
	default:
		client := sesv2.NewFromConfig(awsCfg, func(o *sesv2.Options) {
			o.BaseEndpoint = herald.Endpoint(cfg.SESEndpoint)
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
		return "", "", fmt.Errorf("%s: read secret: %w", contract.SMTPSecretID.Name, err)
	}
	var v struct {
		Username string `json:"username"`
		Password string `json:"password"`
	}
	if err := json.Unmarshal([]byte(aws.ToString(out.SecretString)), &v); err != nil {
		// The JSON error could quote the secret: leave it out.
		return "", "", fmt.Errorf(`%s: the secret is not JSON {"username","password"}`, contract.SMTPSecretID.Name)
	}
	if v.Username == "" || v.Password == "" {
		return "", "", fmt.Errorf("%s: the secret needs both username and password", contract.SMTPSecretID.Name)
	}
	return v.Username, v.Password, nil
}

// certPool is the system roots plus the PEM certificates in file (a private
// relay's CA).
func certPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", contract.SMTPCAFile.Name, err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificate in %s", contract.SMTPCAFile.Name, file)
	}
	return pool, nil
}
