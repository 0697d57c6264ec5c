// Package consumer moves notifications from the SQS queue to a transport:
// long-polls in batches sized to the free workers, sends each message,
// deletes successes in batches, backs off transient failures with
// ChangeMessageVisibility, dead-letters permanent ones, keeps slow messages
// invisible with a heartbeat and, on shutdown, finishes what is in flight and
// hands back at once what it had not started.
package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"herald/services/email-sender/transport"
	"herald/services/internal/herald"
)

// SQS is the part of the SQS client the consumer uses.
type SQS interface {
	ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, optFns ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error)
	DeleteMessageBatch(ctx context.Context, in *sqs.DeleteMessageBatchInput, optFns ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error)
	DeleteMessage(ctx context.Context, in *sqs.DeleteMessageInput, optFns ...func(*sqs.Options)) (*sqs.DeleteMessageOutput, error)
	ChangeMessageVisibility(ctx context.Context, in *sqs.ChangeMessageVisibilityInput, optFns ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityOutput, error)
	ChangeMessageVisibilityBatch(ctx context.Context, in *sqs.ChangeMessageVisibilityBatchInput, optFns ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityBatchOutput, error)
	SendMessage(ctx context.Context, in *sqs.SendMessageInput, optFns ...func(*sqs.Options)) (*sqs.SendMessageOutput, error)
}

// Sender delivers one envelope and returns the provider's message id. The
// SES and SMTP transports implement it.
type Sender interface {
	Send(ctx context.Context, e *herald.Envelope) (string, error)
}

// Limiter paces sends; *rate.Limiter implements it.
type Limiter interface {
	Wait(ctx context.Context) error
}

// Metric names (services/README.md).
const (
	MetricSent           = "Sent"
	MetricFailed         = "Failed"
	MetricRetried        = "Retried"
	MetricDeadLettered   = "DeadLettered"
	MetricSendLatency    = "SendLatency"
	MetricProcessingTime = "ProcessingTime"
)

// Config tunes the consumer; zero values take the defaults noted.
type Config struct {
	QueueURL      string
	DeadLetterURL string
	// Pollers concurrent long-polls (default 2); Workers concurrent sends (default 32).
	Pollers, Workers int
	// WaitTime is the long-poll wait, whole seconds up to 20 (default 20 s).
	WaitTime time.Duration
	// Visibility is the visibility timeout asked for on receive and renewed
	// by the heartbeat at half of it (default 60 s).
	Visibility time.Duration
	// SendTimeout bounds one send (default 10 s).
	SendTimeout time.Duration
	// RetryBase and RetryMax shape the backoff of transient failures
	// (defaults 5 s and 15 min).
	RetryBase, RetryMax time.Duration
	// ShutdownTimeout bounds the drain after Run's context ends (default 25 s).
	ShutdownTimeout time.Duration
	// BatchLinger is how long a delete or release may wait for nine others
	// (default 50 ms).
	BatchLinger time.Duration
	// ReceiveBatch is the most messages one receive asks for, 1 to 10
	// (default 10); a poller waits for that many free workers.
	ReceiveBatch int
	// DeleteBatch is the most messages one delete call removes, 1 to 10
	// (default 10); 1 deletes each with DeleteMessage at once.
	DeleteBatch int
}

func (c *Config) defaults() error {
	if c.QueueURL == "" || c.DeadLetterURL == "" {
		return errors.New("consumer: queue and dead-letter queue URLs are required")
	}
	setDefault(&c.Pollers, 2)
	setDefault(&c.Workers, 32)
	setDefault(&c.WaitTime, 20*time.Second)
	setDefault(&c.Visibility, 60*time.Second)
	setDefault(&c.SendTimeout, 10*time.Second)
	setDefault(&c.RetryBase, 5*time.Second)
	setDefault(&c.RetryMax, 15*time.Minute)
	setDefault(&c.ShutdownTimeout, 25*time.Second)
	setDefault(&c.BatchLinger, 50*time.Millisecond)
	setDefault(&c.ReceiveBatch, maxBatch)
	setDefault(&c.DeleteBatch, maxBatch)
	switch {
	case c.ReceiveBatch > maxBatch || c.DeleteBatch > maxBatch:
		return fmt.Errorf("consumer: receive batch %d and delete batch %d must be 1 to %d", c.ReceiveBatch, c.DeleteBatch, maxBatch)
	case c.WaitTime > 20*time.Second:
		return fmt.Errorf("consumer: wait time %s is over SQS's 20 s", c.WaitTime)
	case c.Visibility < 2*time.Second || c.Visibility > MaxVisibility:
		return fmt.Errorf("consumer: visibility timeout %s is outside 2s..12h", c.Visibility)
	case c.RetryBase > c.RetryMax:
		return fmt.Errorf("consumer: retry base %s is above retry max %s", c.RetryBase, c.RetryMax)
	}
	return nil
}

func setDefault[T int | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// Deps are the consumer's collaborators.
type Deps struct {
	SQS    SQS
	Sender Sender
	// Limiter paces sends; nil sends as fast as workers allow.
	Limiter Limiter
	// Classify says what a send error means; nil uses transport.Classify.
	Classify func(error) transport.Failure
	Logger   *slog.Logger
	// Metrics may be nil (metrics off).
	Metrics *herald.Metrics
}

// Consumer is one queue's consumer. Make it with New and call Run once.
type Consumer struct {
	cfg      Config
	sqs      SQS
	sender   Sender
	limiter  Limiter
	classify func(error) transport.Failure
	log      *slog.Logger
	metrics  *herald.Metrics
	rnd      func(n int64) int64

	slots    *slots
	attempts *attempts
	deletes  *batcher
	releases *batcher

	lastProgress atomic.Int64 // unix nanoseconds
	pausedUntil  atomic.Int64 // unix nanoseconds
	abandoned    atomic.Int64 // sends cut short by the shutdown deadline
}

// New checks cfg and applies its defaults.
func New(cfg Config, d Deps) (*Consumer, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if d.SQS == nil || d.Sender == nil {
		return nil, errors.New("consumer: SQS client and sender are required")
	}
	if d.Classify == nil {
		d.Classify = transport.Classify
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Consumer{
		cfg: cfg, sqs: d.SQS, sender: d.Sender, limiter: d.Limiter,
		classify: d.Classify, log: d.Logger, metrics: d.Metrics, rnd: rand.Int64N,
		slots:    newSlots(cfg.Workers),
		attempts: newAttempts(10_000),
	}
	c.markProgress()
	return c, nil
}

// LastProgress is when the poll loop last completed a receive or a worker
// last finished a message. The health check fails when it grows old; a full
// pool of busy workers is progress too, so slow sends do not look like a
// stall.
func (c *Consumer) LastProgress() time.Time { return time.Unix(0, c.lastProgress.Load()) }

func (c *Consumer) markProgress() { c.lastProgress.Store(time.Now().UnixNano()) }

// lifetimes are the contexts of one Run.
type lifetimes struct {
	// stop is Run's context: once it ends, nothing new is received or started.
	stop context.Context
	// sends carries sends in flight; it ends shortly before the shutdown
	// deadline, leaving time to record their outcome.
	sends context.Context
	// final carries SQS bookkeeping (deletes, visibility, DLQ); it ends at
	// the shutdown deadline.
	final context.Context
}

// Run consumes until ctx ends, then drains within Config.ShutdownTimeout:
// sends in flight finish and are deleted, messages received but not started
// are made visible again at once. It returns an error only when the deadline
// cut sends short.
func (c *Consumer) Run(ctx context.Context) error {
	base := context.WithoutCancel(ctx)
	sends, cancelSends := context.WithCancel(base)
	defer cancelSends()
	final, cancelFinal := context.WithCancel(base)
	defer cancelFinal()
	lt := lifetimes{stop: ctx, sends: sends, final: final}

	finished := make(chan struct{})
	defer close(finished)
	go func() {
		select {
		case <-ctx.Done():
		case <-finished:
			return
		}
		reserve := min(c.cfg.ShutdownTimeout/5, 5*time.Second)
		sendsEnd := time.NewTimer(c.cfg.ShutdownTimeout - reserve)
		defer sendsEnd.Stop()
		finalEnd := time.NewTimer(c.cfg.ShutdownTimeout)
		defer finalEnd.Stop()
		for {
			select {
			case <-sendsEnd.C:
				cancelSends()
			case <-finalEnd.C:
				cancelFinal()
				return
			case <-finished:
				return
			}
		}
	}()

	c.deletes = newBatcher(final, c.cfg.BatchLinger, c.cfg.DeleteBatch, c.flushDeletes)
	c.releases = newBatcher(final, c.cfg.BatchLinger, maxBatch, c.flushReleases)
	c.log.Info("consumer started", "queue", c.cfg.QueueURL, "pollers", c.cfg.Pollers, "workers", c.cfg.Workers)

	var pollers, workers sync.WaitGroup
	for range c.cfg.Pollers {
		pollers.Go(func() { c.poll(lt, &workers) })
	}
	pollers.Wait()
	c.log.Info("stopped receiving; draining")
	workers.Wait()
	c.releases.close()
	c.deletes.close()
	if n := c.abandoned.Load(); n > 0 {
		return fmt.Errorf("shutdown deadline %s cut %d sends short; their messages return after the visibility timeout", c.cfg.ShutdownTimeout, n)
	}
	c.log.Info("drained")
	return nil
}

// poll is one long-poll loop: it holds worker slots before receiving so that
// every message received is started at once.
func (c *Consumer) poll(lt lifetimes, workers *sync.WaitGroup) {
	// Ask in tens: fewer, fuller receives cost less (SQS bills per request).
	// A poller waits until ten workers are free (all of them, when there are
	// fewer) and other pollers keep the rest busy meanwhile.
	least := min(c.cfg.ReceiveBatch, c.cfg.Workers)
	failures := 0
	for lt.stop.Err() == nil {
		if !c.waitPause(lt.stop) {
			return
		}
		n, err := c.slots.acquire(lt.stop, least, c.cfg.ReceiveBatch)
		if err != nil {
			return
		}
		out, err := c.sqs.ReceiveMessage(lt.stop, &sqs.ReceiveMessageInput{
			QueueUrl:            aws.String(c.cfg.QueueURL),
			MaxNumberOfMessages: int32(n),
			WaitTimeSeconds:     int32(c.cfg.WaitTime / time.Second),
			VisibilityTimeout:   VisibilitySeconds(c.cfg.Visibility),
			MessageSystemAttributeNames: []types.MessageSystemAttributeName{
				types.MessageSystemAttributeNameSentTimestamp,
				types.MessageSystemAttributeNameApproximateReceiveCount,
				types.MessageSystemAttributeNameApproximateFirstReceiveTimestamp,
			},
			MessageAttributeNames: []string{"All"},
		})
		var msgs []types.Message
		if err == nil {
			msgs = out.Messages
		}
		c.slots.release(n - len(msgs))
		if err != nil {
			if lt.stop.Err() != nil {
				// Cancelled mid-poll. Should SQS have picked messages for this
				// poll, they return after the visibility timeout.
				return
			}
			failures++
			wait := pollBackoff(failures, c.rnd)
			c.log.Warn("receive failed", "err", err, "failures", failures, "retryIn", wait.String())
			if !sleep(lt.stop, wait) {
				return
			}
			continue
		}
		failures = 0
		c.markProgress()
		received := time.Now()
		for _, m := range msgs {
			workers.Go(func() {
				defer c.slots.release(1)
				defer c.markProgress()
				c.handle(lt, m, received)
			})
		}
	}
}

// message is one received message and what is known about it.
type message struct {
	types.Message
	id       string
	receipt  string
	attempt  int
	sentAt   time.Time
	received time.Time
	// firstReceived is SQS's first receive of the message (this receive
	// when SQS does not say).
	firstReceived time.Time
}

func (m *message) entry() entry { return entry{messageID: m.id, receipt: m.receipt} }

// handle takes one message to its end: sent and deleted, retried later,
// dead-lettered, or released at shutdown.
func (c *Consumer) handle(lt lifetimes, raw types.Message, received time.Time) {
	m := &message{
		Message:  raw,
		id:       aws.ToString(raw.MessageId),
		receipt:  aws.ToString(raw.ReceiptHandle),
		received: received,
	}
	// The backoff grows with the attempt: SQS's receive count, or this
	// process's own count where that is higher (goaws always reports 1).
	m.attempt = max(attrInt(raw.Attributes, string(types.MessageSystemAttributeNameApproximateReceiveCount)), c.attempts.seen(m.id))
	if ms := attrInt(raw.Attributes, string(types.MessageSystemAttributeNameSentTimestamp)); ms > 0 {
		m.sentAt = time.UnixMilli(int64(ms))
	}
	m.firstReceived = received
	if ms := attrInt(raw.Attributes, string(types.MessageSystemAttributeNameApproximateFirstReceiveTimestamp)); ms > 0 {
		m.firstReceived = time.UnixMilli(int64(ms))
	}
	log := c.log.With("sqsMessageId", m.id, "attempt", m.attempt)

	env, err := herald.DecodeEnvelope([]byte(aws.ToString(raw.Body)))
	if err != nil {
		c.fail(lt, m, transport.Failure{Class: transport.Unreadable, Reason: transport.Sanitize(err.Error())}, 0, log)
		return
	}
	log = log.With("envelopeId", env.ID, "from", herald.MaskAddress(env.From), "recipients", env.Recipients())

	stopHeartbeat := c.heartbeat(lt.final, m, log)
	if c.limiter != nil {
		if err := c.limiter.Wait(lt.stop); err != nil {
			stopHeartbeat()
			c.release(m, log)
			return
		}
	}
	if lt.stop.Err() != nil {
		stopHeartbeat()
		c.release(m, log)
		return
	}

	start := time.Now()
	sendCtx, cancel := context.WithTimeout(lt.sends, c.cfg.SendTimeout)
	providerID, err := c.sender.Send(sendCtx, &env)
	cancel()
	latency := time.Since(start)
	stopHeartbeat()

	if err == nil {
		accepted := time.Now()
		c.deletes.add(m.entry())
		c.attempts.forget(m.id)
		c.metrics.Count(MetricSent, 1)
		c.metrics.Observe(MetricSendLatency, latency)
		attrs := []any{"outcome", "sent", "latencyMs", latency.Milliseconds(), "providerId", providerID}
		if !m.sentAt.IsZero() {
			// goaws reports the receive time as SentTimestamp, so locally this
			// is close to the send latency; on SQS it includes the queue wait.
			processing := accepted.Sub(m.sentAt)
			c.metrics.Observe(MetricProcessingTime, processing)
			attrs = append(attrs, "processingMs", processing.Milliseconds())
		}
		log.Info("message sent", attrs...)
		return
	}
	if lt.sends.Err() != nil {
		// The shutdown deadline cut the send short: whether the provider took
		// it is unknown, so the message is left to come back after the
		// visibility timeout (at-least-once).
		c.abandoned.Add(1)
		log.Warn("send cut short by the shutdown deadline", "outcome", "abandoned", "latencyMs", latency.Milliseconds())
		return
	}
	c.fail(lt, m, c.classify(err), latency, log)
}

// fail records a failed message and retries or dead-letters it by class.
func (c *Consumer) fail(lt lifetimes, m *message, f transport.Failure, latency time.Duration, log *slog.Logger) {
	c.metrics.CountBy(MetricFailed, "Class", string(f.Class), 1)
	log = log.With("class", string(f.Class), "reason", f.Reason, "latencyMs", latency.Milliseconds())
	if f.Class.Retry() {
		if f.Class == transport.Account {
			c.pause(log)
		}
		c.retryLater(lt.final, m, log)
		return
	}
	c.deadLetter(lt.final, m, f, log)
}

// retryLater keeps the message on the queue and makes it visible again after
// a full-jitter backoff grown from its attempt count.
func (c *Consumer) retryLater(ctx context.Context, m *message, log *slog.Logger) {
	delay := Backoff(m.attempt, c.cfg.RetryBase, c.cfg.RetryMax, c.rnd)
	secs := VisibilitySeconds(delay)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err := c.sqs.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{
		QueueUrl:          aws.String(c.cfg.QueueURL),
		ReceiptHandle:     aws.String(m.receipt),
		VisibilityTimeout: secs,
	})
	c.metrics.Count(MetricRetried, 1)
	if err != nil {
		log.Warn("send failed; could not set its backoff, it returns after the visibility timeout",
			"outcome", "retry", "err", err)
		return
	}
	log.Warn("send failed; retrying later", "outcome", "retry", "retryInSeconds", secs)
}

// deadLetter moves the message to the DLQ with the reason attached, then
// deletes it. When the DLQ send fails the message stays: it comes back after
// the visibility timeout and SQS redrive moves it in the end.
func (c *Consumer) deadLetter(ctx context.Context, m *message, f transport.Failure, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err := c.sqs.SendMessage(ctx, &sqs.SendMessageInput{
		QueueUrl:          aws.String(c.cfg.DeadLetterURL),
		MessageBody:       m.Body,
		MessageAttributes: deadLetterAttributes(m, f),
	})
	if err != nil {
		log.Error("dead-letter queue send failed; message left on the queue", "outcome", "kept", "err", err)
		return
	}
	c.deletes.add(m.entry())
	c.attempts.forget(m.id)
	c.metrics.Count(MetricDeadLettered, 1)
	log.Warn("message dead-lettered", "outcome", "dead-lettered")
}

// maxAttributes is SQS's limit of message attributes per message.
const maxAttributes = 10

// deadLetterAttributes keeps the original's attributes (as many as fit
// beside Herald's own, by name) and adds the failure's: class, reason,
// attempts, first attempt and the source message id.
func deadLetterAttributes(m *message, f transport.Failure) map[string]types.MessageAttributeValue {
	attrs := map[string]types.MessageAttributeValue{
		herald.AttrFailureClass:        {DataType: aws.String("String"), StringValue: aws.String(string(f.Class))},
		herald.AttrFailureReason:       {DataType: aws.String("String"), StringValue: aws.String(nonEmpty(f.Reason, "unknown"))},
		herald.AttrSourceMessageID:     {DataType: aws.String("String"), StringValue: aws.String(m.id)},
		herald.AttrFailureAttempts:     {DataType: aws.String("Number"), StringValue: aws.String(strconv.Itoa(max(m.attempt, 1)))},
		herald.AttrFailureFirstAttempt: {DataType: aws.String("String"), StringValue: aws.String(m.firstReceived.UTC().Format(herald.TimeFormatMillis))},
	}
	names := make([]string, 0, len(m.MessageAttributes))
	for name := range m.MessageAttributes {
		if !strings.HasPrefix(name, "herald.failure.") && name != herald.AttrSourceMessageID {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		if len(attrs) == maxAttributes {
			break
		}
		attrs[name] = m.MessageAttributes[name]
	}
	return attrs
}

// release hands a message received but not started back to the queue at
// once (visibility 0), batched with others released at the same time.
func (c *Consumer) release(m *message, log *slog.Logger) {
	c.releases.add(m.entry())
	log.Info("message released unstarted at shutdown", "outcome", "released")
}

// heartbeat extends the message's visibility every half visibility timeout
// while it is being handled. stop waits for an extension in progress, so none
// happens after the message's fate is decided.
func (c *Consumer) heartbeat(ctx context.Context, m *message, log *slog.Logger) (stop func()) {
	every := c.cfg.Visibility / 2
	first := every - time.Since(m.received)
	done, exited := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(exited)
		t := time.NewTimer(max(first, 0))
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			cctx, cancel := context.WithTimeout(ctx, every)
			_, err := c.sqs.ChangeMessageVisibility(cctx, &sqs.ChangeMessageVisibilityInput{
				QueueUrl:          aws.String(c.cfg.QueueURL),
				ReceiptHandle:     aws.String(m.receipt),
				VisibilityTimeout: VisibilitySeconds(c.cfg.Visibility),
			})
			cancel()
			if err != nil {
				log.Warn("visibility heartbeat failed", "err", err)
			} else {
				log.Debug("visibility extended", "seconds", VisibilitySeconds(c.cfg.Visibility))
			}
			t.Reset(every)
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(done)
			<-exited
		})
	}
}

// pause holds receiving for the retry base after an account-level failure:
// every message would fail the same way, so receiving more only spends SES
// and SQS calls. Messages in flight still finish.
func (c *Consumer) pause(log *slog.Logger) {
	until := time.Now().Add(c.cfg.RetryBase).UnixNano()
	for {
		cur := c.pausedUntil.Load()
		if cur >= until {
			return
		}
		if c.pausedUntil.CompareAndSwap(cur, until) {
			log.Warn("account-level failure; receiving paused", "pause", c.cfg.RetryBase.String())
			return
		}
	}
}

// waitPause returns false when ctx ended during a pause.
func (c *Consumer) waitPause(ctx context.Context) bool {
	until := time.Unix(0, c.pausedUntil.Load())
	if d := time.Until(until); d > 0 {
		return sleep(ctx, d)
	}
	return true
}

func (c *Consumer) flushDeletes(ctx context.Context, batch []entry) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if c.cfg.DeleteBatch == 1 {
		for _, e := range batch {
			_, err := c.sqs.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(c.cfg.QueueURL), ReceiptHandle: aws.String(e.receipt)})
			if err != nil {
				c.log.Error("delete failed; this message will be received and sent again", "sqsMessageId", e.messageID, "err", err)
			}
		}
		return
	}
	in := &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(c.cfg.QueueURL)}
	for i, e := range batch {
		in.Entries = append(in.Entries, types.DeleteMessageBatchRequestEntry{
			Id: aws.String(strconv.Itoa(i)), ReceiptHandle: aws.String(e.receipt),
		})
	}
	out, err := c.sqs.DeleteMessageBatch(ctx, in)
	if err != nil {
		c.log.Error("delete batch failed; these messages will be received and sent again", "count", len(batch), "err", err)
		return
	}
	for _, f := range out.Failed {
		c.log.Error("delete failed; this message will be received and sent again",
			"sqsMessageId", batchMessageID(batch, f.Id), "code", aws.ToString(f.Code))
	}
}

func (c *Consumer) flushReleases(ctx context.Context, batch []entry) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	in := &sqs.ChangeMessageVisibilityBatchInput{QueueUrl: aws.String(c.cfg.QueueURL)}
	for i, e := range batch {
		in.Entries = append(in.Entries, types.ChangeMessageVisibilityBatchRequestEntry{
			Id: aws.String(strconv.Itoa(i)), ReceiptHandle: aws.String(e.receipt), VisibilityTimeout: 0,
		})
	}
	out, err := c.sqs.ChangeMessageVisibilityBatch(ctx, in)
	if err != nil {
		// Not every SQS emulator has the batch call (goaws has not): one call
		// per message does the same.
		c.log.Debug("visibility batch failed; releasing one by one", "err", err)
		for _, e := range batch {
			_, err := c.sqs.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{
				QueueUrl: aws.String(c.cfg.QueueURL), ReceiptHandle: aws.String(e.receipt), VisibilityTimeout: 0,
			})
			if err != nil {
				c.log.Warn("release failed; the message returns after the visibility timeout", "sqsMessageId", e.messageID, "err", err)
			}
		}
		return
	}
	for _, f := range out.Failed {
		c.log.Warn("release failed; the message returns after the visibility timeout",
			"sqsMessageId", batchMessageID(batch, f.Id), "code", aws.ToString(f.Code))
	}
}

func batchMessageID(batch []entry, id *string) string {
	i, err := strconv.Atoi(aws.ToString(id))
	if err != nil || i < 0 || i >= len(batch) {
		return ""
	}
	return batch[i].messageID
}

func attrInt(attrs map[string]string, name string) int {
	n, err := strconv.Atoi(attrs[name])
	if err != nil {
		return 0
	}
	return n
}

func nonEmpty(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// sleep waits d or until ctx ends; false when ctx ended.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
