// Command sqs-local runs the goaws SQS emulator on loopback with Herald's
// queue and its dead-letter queue, and the SES feedback queue and its
// dead-letter queue, as a process of its own so the local
// pipeline and the tests can stop, kill and restart it like a real endpoint
// going away. Once it serves it prints one JSON line (sqslocal.Ready) on
// stdout; SIGTERM or SIGINT stops it.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"syscall"
	"time"

	"herald/services/contract"
	"herald/services/devstack/sqslocal"
	"herald/services/internal/herald"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "sqs-local:", err)
		os.Exit(1)
	}
}

type options struct {
	addr              string
	queue             string
	dlq               string
	maxReceiveCount   int
	visibilityTimeout time.Duration
	feedback          string
	feedbackDLQ       string
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("sqs-local", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.addr, "addr", "127.0.0.1:0", "loopback `host:port` to listen on (port 0 picks a free one)")
	fs.StringVar(&o.queue, "queue", "herald-notifications", "name of the notification queue")
	fs.StringVar(&o.dlq, "dlq", "herald-notifications-dlq", "name of its dead-letter queue (empty: none)")
	fs.IntVar(&o.maxReceiveCount, "max-receive-count", 5, "receives after which SQS moves a message to the dead-letter queue")
	fs.DurationVar(&o.visibilityTimeout, "visibility-timeout", 30*time.Second, "the queue's visibility timeout (whole seconds)")
	fs.StringVar(&o.feedback, "feedback-queue", "herald-feedback", "name of the SES feedback queue (empty: none)")
	fs.StringVar(&o.feedbackDLQ, "feedback-dlq", "herald-feedback-dlq", "name of its dead-letter queue (required with it)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if o.queue == "" {
		return o, errors.New("-queue must not be empty")
	}
	if o.dlq == o.queue {
		return o, errors.New("-dlq must differ from -queue")
	}
	if o.dlq != "" && o.maxReceiveCount < 1 {
		return o, fmt.Errorf("-max-receive-count %d: must be at least 1", o.maxReceiveCount)
	}
	if o.feedback != "" && (o.feedbackDLQ == "" || o.feedbackDLQ == o.feedback) {
		return o, errors.New("-feedback-dlq must be set and differ from -feedback-queue")
	}
	if o.feedback != "" && (o.feedback == o.queue || o.feedback == o.dlq || o.feedbackDLQ == o.queue || o.feedbackDLQ == o.dlq) {
		return o, errors.New("the feedback queues must differ from the notification queues")
	}
	if o.visibilityTimeout < time.Second || o.visibilityTimeout > 12*time.Hour {
		return o, fmt.Errorf("-visibility-timeout %s: must be 1s to 12h", o.visibilityTimeout)
	}
	return o, nil
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	o, err := parseFlags(args, os.Stderr)
	if err != nil {
		return err
	}
	r := contract.NewReader(getenv)
	level := contract.LogLevel.Read(r)
	if err := r.Err(); err != nil {
		return err
	}
	log := herald.NewLogger(herald.NewSyncWriter(os.Stderr), level, "local", "sqs-local")

	work := sqslocal.Queue{Name: o.queue, VisibilityTimeout: int(math.Ceil(o.visibilityTimeout.Seconds()))}
	queues := []sqslocal.Queue{work}
	if o.dlq != "" {
		queues[0].DeadLetter = o.dlq
		queues[0].MaxReceiveCount = o.maxReceiveCount
		queues = append(queues, sqslocal.Queue{Name: o.dlq})
	}
	if o.feedback != "" {
		// Its visibility and redrive as the stacks make them.
		queues = append(queues,
			sqslocal.Queue{Name: o.feedback, VisibilityTimeout: int(contract.FeedbackVisibility.Default / time.Second),
				DeadLetter: o.feedbackDLQ, MaxReceiveCount: contract.FeedbackMaxReceiveCount},
			sqslocal.Queue{Name: o.feedbackDLQ})
	}
	srv, err := sqslocal.Start(sqslocal.Config{Addr: o.addr, Queues: queues})
	if err != nil {
		return err
	}
	ready := sqslocal.Ready{Ready: true, Endpoint: srv.Endpoint, QueueURL: srv.QueueURL(o.queue)}
	if o.dlq != "" {
		ready.DLQURL = srv.QueueURL(o.dlq)
	}
	if o.feedback != "" {
		ready.FeedbackURL, ready.FeedbackDLQURL = srv.QueueURL(o.feedback), srv.QueueURL(o.feedbackDLQ)
	}
	if err := json.NewEncoder(stdout).Encode(ready); err != nil {
		srv.Close()
		return fmt.Errorf("write ready line: %w", err)
	}
	log.Info("serving", "endpoint", srv.Endpoint, "queue", o.queue, "dlq", o.dlq,
		"maxReceiveCount", o.maxReceiveCount, "visibilityTimeout", o.visibilityTimeout.String())

	<-ctx.Done()
	// Long polls hold requests for up to 20 s: give them a moment, then cut
	// them off as a vanished endpoint would.
	sctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("shut down: %w", err)
	}
	log.Info("stopped")
	return nil
}
