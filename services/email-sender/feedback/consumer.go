package feedback

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"herald/services/email-sender/consumer"
	"herald/services/internal/herald"
	"herald/services/internal/store"
)

// SQS is the part of the SQS client the feedback consumer uses.
type SQS interface {
	ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, optFns ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error)
	DeleteMessageBatch(ctx context.Context, in *sqs.DeleteMessageBatchInput, optFns ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error)
	ChangeMessageVisibility(ctx context.Context, in *sqs.ChangeMessageVisibilityInput, optFns ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityOutput, error)
	SendMessage(ctx context.Context, in *sqs.SendMessageInput, optFns ...func(*sqs.Options)) (*sqs.SendMessageOutput, error)
}

// Handler processes one message; *Processor implements it. A *Malformed
// error is permanent, any other transient.
type Handler interface {
	Process(ctx context.Context, body []byte) (Result, error)
}

// ConsumerConfig tunes the feedback consumer. Every field is required (the
// defaults live with the settings, FEEDBACK.md).
type ConsumerConfig struct {
	QueueURL, DeadLetterURL string
	// Pollers is how many long polls run at once; each handles the up to
	// ten messages it receives at once, so at most 10 × Pollers events are
	// in flight.
	Pollers int
	// WaitTime is the long-poll wait, whole seconds, 1 s to 20 s.
	WaitTime time.Duration
	// Visibility is the visibility timeout asked for on receive; it must
	// cover a batch: at least three ProcessTimeouts.
	Visibility time.Duration
	// ProcessTimeout bounds the store's work on one event.
	ProcessTimeout time.Duration
	// RetryBase and RetryMax shape the backoff after a transient failure:
	// the message becomes visible again after it, and the poller pauses
	// for it while the store is unavailable.
	RetryBase, RetryMax time.Duration
}

func (c ConsumerConfig) check() error {
	var errs []error
	if c.QueueURL == "" || c.DeadLetterURL == "" {
		errs = append(errs, errors.New("queue and dead-letter queue URLs are required"))
	}
	if c.Pollers < 1 || c.Pollers > 100 {
		errs = append(errs, fmt.Errorf("pollers %d must be 1 to 100", c.Pollers))
	}
	if c.WaitTime < time.Second || c.WaitTime > 20*time.Second || c.WaitTime%time.Second != 0 {
		errs = append(errs, fmt.Errorf("wait time %s must be whole seconds, 1s to 20s", c.WaitTime))
	}
	if c.ProcessTimeout < 10*time.Millisecond {
		errs = append(errs, fmt.Errorf("process timeout %s must be at least 10ms", c.ProcessTimeout))
	}
	if c.Visibility < 3*c.ProcessTimeout || c.Visibility < time.Second || c.Visibility > consumer.MaxVisibility {
		errs = append(errs, fmt.Errorf("visibility %s must be 1s to 12h and at least three process timeouts (%s)", c.Visibility, 3*c.ProcessTimeout))
	}
	if c.RetryBase <= 0 || c.RetryBase > c.RetryMax || c.RetryMax > consumer.MaxVisibility {
		errs = append(errs, fmt.Errorf("retry base %s and max %s must be positive, base <= max <= 12h", c.RetryBase, c.RetryMax))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("feedback consumer: %w", err)
	}
	return nil
}

// Consumer moves the feedback queue's messages through a Handler: long polls
// of ten, each batch handled at once, the processed and dead-lettered ones
// deleted in one batch call, the others left to come back after a backoff.
// Events are quick (one conditional write), so there is no heartbeat: the
// visibility timeout covers a batch.
type Consumer struct {
	cfg     ConsumerConfig
	sqs     SQS
	handler Handler
	log     *slog.Logger
	metrics *herald.Metrics
	rnd     func(int64) int64

	lastProgress atomic.Int64 // unix nanoseconds
}

// NewConsumer checks cfg. log is required; metrics may be nil.
func NewConsumer(cfg ConsumerConfig, q SQS, h Handler, log *slog.Logger, metrics *herald.Metrics) (*Consumer, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if q == nil || h == nil || log == nil {
		return nil, errors.New("feedback consumer: an SQS client, a handler and a logger are required")
	}
	c := &Consumer{cfg: cfg, sqs: q, handler: h, log: log, metrics: metrics, rnd: rand.Int64N}
	c.markProgress()
	return c, nil
}

// LastProgress is when a poll last completed or a pause last checked in;
// the health check fails when it grows old.
func (c *Consumer) LastProgress() time.Time { return time.Unix(0, c.lastProgress.Load()) }

func (c *Consumer) markProgress() { c.lastProgress.Store(time.Now().UnixNano()) }

// Run consumes until ctx ends. A batch in progress finishes (its store
// writes and SQS calls have their own deadlines); messages received and not
// finished come back after the visibility timeout.
func (c *Consumer) Run(ctx context.Context) error {
	c.log.Info("feedback consumer started", "queue", c.cfg.QueueURL, "pollers", c.cfg.Pollers)
	var wg sync.WaitGroup
	for range c.cfg.Pollers {
		wg.Go(func() { c.poll(ctx) })
	}
	wg.Wait()
	c.log.Info("feedback consumer stopped")
	return nil
}

// poll is one long-poll loop.
func (c *Consumer) poll(ctx context.Context) {
	failures := 0 // consecutive failed receives or batches that met an unavailable store
	for ctx.Err() == nil {
		out, err := c.sqs.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl:                    aws.String(c.cfg.QueueURL),
			MaxNumberOfMessages:         10,
			WaitTimeSeconds:             int32(c.cfg.WaitTime / time.Second),
			VisibilityTimeout:           consumer.VisibilitySeconds(c.cfg.Visibility),
			MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameApproximateReceiveCount},
		})
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			failures++
			wait := consumer.Backoff(failures, c.cfg.RetryBase, c.cfg.RetryMax, c.rnd)
			c.log.Warn("feedback receive failed", "err", err, "failures", failures, "retryIn", wait.String())
			if !c.pause(ctx, wait) {
				return
			}
			continue
		}
		c.markProgress()
		if c.handle(ctx, out.Messages) {
			failures++
			wait := consumer.Backoff(failures, c.cfg.RetryBase, c.cfg.RetryMax, c.rnd)
			c.log.Warn("state store unavailable; pausing the feedback", "failures", failures, "pauseFor", wait.String())
			if !c.pause(ctx, wait) {
				return
			}
			continue
		}
		failures = 0
	}
}

// pause waits d, checking in as progress every few seconds (a deliberate
// pause is not a stall); false when ctx ended.
func (c *Consumer) pause(ctx context.Context, d time.Duration) bool {
	end := time.Now().Add(d)
	for {
		left := time.Until(end)
		if left <= 0 {
			return true
		}
		t := time.NewTimer(min(left, 5*time.Second))
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
			c.markProgress()
		}
	}
}

// fate is what became of one message of a batch.
type fate struct {
	msg       types.Message
	err       error
	permanent *Malformed
}

// handle processes a batch at once and settles each message: deleted when
// processed, dead-lettered then deleted when malformed, made visible again
// after a backoff otherwise. It reports whether the store was unavailable.
func (c *Consumer) handle(ctx context.Context, msgs []types.Message) (storeDown bool) {
	if len(msgs) == 0 {
		return false
	}
	// The batch finishes after ctx ends: its writes have their own deadline.
	work := context.WithoutCancel(ctx)
	fates := make([]fate, len(msgs))
	var wg sync.WaitGroup
	for i, m := range msgs {
		wg.Go(func() {
			pctx, cancel := context.WithTimeout(work, c.cfg.ProcessTimeout)
			defer cancel()
			_, err := c.handler.Process(pctx, []byte(aws.ToString(m.Body)))
			fates[i] = fate{msg: m, err: err}
			errors.As(err, &fates[i].permanent)
		})
	}
	wg.Wait()

	var done []types.Message
	for _, f := range fates {
		log := c.log.With("sqsMessageId", aws.ToString(f.msg.MessageId))
		switch {
		case f.err == nil:
			done = append(done, f.msg)
		case f.permanent != nil:
			if c.deadLetter(work, f.msg, f.permanent, log) {
				done = append(done, f.msg)
			}
		default:
			storeDown = storeDown || store.Unavailable(f.err)
			c.retryLater(work, f.msg, f.err, log)
		}
	}
	c.delete(work, done)
	return storeDown
}

// deadLetter sends the message to the DLQ with the reason attached; false
// when that failed (the message stays and comes back).
func (c *Consumer) deadLetter(ctx context.Context, m types.Message, why *Malformed, log *slog.Logger) bool {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	reason := why.Reason
	if len(reason) > 1000 {
		reason = reason[:1000]
	}
	_, err := c.sqs.SendMessage(ctx, &sqs.SendMessageInput{
		QueueUrl:    aws.String(c.cfg.DeadLetterURL),
		MessageBody: m.Body,
		MessageAttributes: map[string]types.MessageAttributeValue{
			herald.AttrFailureClass:    {DataType: aws.String("String"), StringValue: aws.String(why.Kind)},
			herald.AttrFailureReason:   {DataType: aws.String("String"), StringValue: aws.String(reason)},
			herald.AttrSourceMessageID: {DataType: aws.String("String"), StringValue: aws.String(aws.ToString(m.MessageId))},
		},
	})
	log = log.With("kind", why.Kind, "reason", why.Reason)
	if err != nil {
		log.Error("feedback DLQ send failed; the event stays on the queue", "err", err)
		return false
	}
	c.metrics.CountBy(MetricDeadLettered, why.Kind, 1)
	log.Warn("feedback event dead-lettered")
	return true
}

// retryLater makes the message visible again after a backoff that grows
// with its receive count.
func (c *Consumer) retryLater(ctx context.Context, m types.Message, cause error, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	receives, _ := strconv.Atoi(m.Attributes[string(types.MessageSystemAttributeNameApproximateReceiveCount)])
	wait := consumer.Backoff(receives, c.cfg.RetryBase, c.cfg.RetryMax, c.rnd)
	c.metrics.Count(MetricRetried, 1)
	_, err := c.sqs.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{
		QueueUrl:          aws.String(c.cfg.QueueURL),
		ReceiptHandle:     m.ReceiptHandle,
		VisibilityTimeout: consumer.VisibilitySeconds(wait),
	})
	if err != nil {
		log.Warn("feedback event failed; it comes back after the visibility timeout", "err", errors.Join(cause, err), "receives", receives)
		return
	}
	log.Warn("feedback event failed; it comes back after a backoff", "err", cause, "receives", receives, "retryIn", wait.String())
}

// delete removes the settled messages in one batch call.
func (c *Consumer) delete(ctx context.Context, msgs []types.Message) {
	if len(msgs) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	in := &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(c.cfg.QueueURL)}
	for i, m := range msgs {
		in.Entries = append(in.Entries, types.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: m.ReceiptHandle})
	}
	out, err := c.sqs.DeleteMessageBatch(ctx, in)
	if err != nil {
		// Processing is idempotent: the events come back and change nothing.
		c.log.Warn("feedback delete batch failed; these events will be processed again", "count", len(msgs), "err", err)
		return
	}
	for _, f := range out.Failed {
		c.log.Warn("feedback delete failed; this event will be processed again", "id", aws.ToString(f.Id), "code", aws.ToString(f.Code))
	}
}
