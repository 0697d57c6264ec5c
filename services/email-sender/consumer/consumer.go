// Package consumer moves notifications from the SQS queue to a transport:
// long-polls in batches sized to the free workers, paces sends under the
// account's rate (AIMD), sends each message, deletes successes in batches,
// re-queues transient failures as copies that carry their retry budget,
// pauses as a whole while the provider fails (breaker), dead-letters
// permanent failures and expired budgets, keeps held messages invisible with
// a heartbeat and, on shutdown, finishes what is in flight and hands back at
// once what it had not started.
package consumer

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

	"herald/services/contract"
	"herald/services/email-sender/transport"
	"herald/services/internal/batch"
	"herald/services/internal/herald"
	"herald/services/internal/store"
	"herald/services/mailaddr"
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

// Limiter paces sends and learns from their outcome; *AIMD implements it.
// admitted is when the Wait that let the send through returned.
type Limiter interface {
	Wait(ctx context.Context) error
	Throttled(admitted time.Time)
	Succeeded(admitted time.Time)
}

// Config tunes the consumer. Every field is required: the sender's
// configuration (services/contract) holds the defaults, and a zero here is
// refused rather than replaced.
type Config struct {
	QueueURL      string
	DeadLetterURL string
	// AllowedFrom are the senders a queued notification may use; a message
	// from any other is dead-lettered as permanent. The queue is not
	// trusted to hold only what the API let through.
	AllowedFrom contract.AllowList
	// Pollers concurrent long-polls; Workers concurrent sends.
	Pollers, Workers int
	// WaitTime is the long-poll wait: 1 to 20 whole seconds. Not 0: SQS
	// would short-poll, answer at once, and the pollers would spin.
	WaitTime time.Duration
	// Visibility is the visibility timeout asked for on receive and renewed
	// by the heartbeat at half of it.
	Visibility time.Duration
	// SendTimeout bounds one send.
	SendTimeout time.Duration
	// RetryBase and RetryMax shape the backoff of transient failures. A
	// re-queued copy waits its backoff as SQS DelaySeconds, so RetryMax is
	// at most 15 minutes; it is also the longest a worker holds a message
	// waiting to send.
	RetryBase, RetryMax time.Duration
	// RetryWindow is how long after its first failed attempt a message is
	// retried before it is dead-lettered as expired.
	RetryWindow time.Duration
	// ShutdownTimeout bounds the drain after Run's context ends.
	ShutdownTimeout time.Duration
	// BatchLinger is how long a delete or release may wait for nine others.
	BatchLinger time.Duration
	// ReceiveBatch is the most messages one receive asks for, 1 to 10; a
	// poller waits for that many free workers.
	ReceiveBatch int
	// DeleteBatch is the most messages one delete call removes, 1 to 10; 1
	// deletes each with DeleteMessage at once.
	DeleteBatch int
}

func (c *Config) validate() error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf("consumer: "+format, args...))
		}
	}
	check(c.QueueURL != "" && c.DeadLetterURL != "", "queue and dead-letter queue URLs are required")
	check(!c.AllowedFrom.Empty(), "the allowed senders are required: an empty list would dead-letter every message")
	check(c.Pollers >= 1 && c.Workers >= 1, "pollers %d and workers %d must be at least 1", c.Pollers, c.Workers)
	check(c.WaitTime >= time.Second && c.WaitTime <= contract.SQSMaxWait && c.WaitTime%time.Second == 0,
		"wait time %s must be 1 to 20 whole seconds (0 would short-poll)", c.WaitTime)
	check(c.Visibility >= 2*time.Second && c.Visibility <= contract.SQSMaxVisibility, "visibility timeout %s is outside 2s..12h", c.Visibility)
	check(c.SendTimeout > 0 && c.ShutdownTimeout > 0 && c.BatchLinger > 0 && c.RetryWindow > 0,
		"send timeout %s, shutdown timeout %s, batch linger %s and retry window %s must be above zero", c.SendTimeout, c.ShutdownTimeout, c.BatchLinger, c.RetryWindow)
	check(c.RetryBase > 0 && c.RetryBase <= c.RetryMax, "retry base %s must be above zero and at most retry max %s", c.RetryBase, c.RetryMax)
	check(c.RetryMax <= contract.SQSMaxDelay, "retry max %s is over SQS's largest message delay %s", c.RetryMax, contract.SQSMaxDelay)
	check(c.ReceiveBatch >= 1 && c.ReceiveBatch <= contract.SQSMaxBatch && c.DeleteBatch >= 1 && c.DeleteBatch <= contract.SQSMaxBatch,
		"receive batch %d and delete batch %d must be 1 to %d", c.ReceiveBatch, c.DeleteBatch, contract.SQSMaxBatch)
	return errors.Join(errs...)
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
	// Store deduplicates by notification id (dedup.go); nil sends every
	// message received (local use only).
	Store Store
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
	store    Store

	slots    *slots
	breaker  *breaker
	deletes  *batch.Batcher[entry]
	releases *batch.Batcher[entry]

	lastProgress atomic.Int64 // unix nanoseconds
	abandoned    atomic.Int64 // sends cut short by the shutdown deadline
	storeDown    atomic.Bool  // the last claim failed: the store paused sending
}

// New checks cfg.
func New(cfg Config, d Deps) (*Consumer, error) {
	if err := cfg.validate(); err != nil {
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
		classify: d.Classify, log: d.Logger, metrics: d.Metrics, rnd: rand.Int64N, store: d.Store,
		slots: newSlots(cfg.Workers),
	}
	c.breaker = newBreaker(time.Now, c.breakerChanged)
	c.markProgress()
	return c, nil
}

// LastProgress is when the poll loop last completed a receive, a worker
// last finished a message, or a deliberate pause last checked in. The health
// check fails when it grows old; a full pool of busy workers is progress
// too, so slow sends do not look like a stall.
func (c *Consumer) LastProgress() time.Time { return time.Unix(0, c.lastProgress.Load()) }

func (c *Consumer) markProgress() { c.lastProgress.Store(time.Now().UnixNano()) }

// breakerChanged logs each pause and resumption once, for all messages.
func (c *Consumer) breakerChanged(open bool, e breakerEvent) {
	if open {
		c.log.Warn("sending paused: the provider fails every send; probing until it recovers",
			"consecutiveFailures", e.consecutive, "lastError", e.reason)
		return
	}
	c.log.Info("sending resumed: a probe went through", "pausedFor", e.pausedFor.Round(time.Millisecond).String(), "probes", e.probes)
}

// lifetimes are the contexts of one Run.
type lifetimes struct {
	// stop is Run's context: once it ends, nothing new is received or started.
	stop context.Context
	// sends carries sends in flight; it ends shortly before the shutdown
	// deadline, leaving time to record their outcome.
	sends context.Context
	// final carries SQS bookkeeping (deletes, visibility, copies, DLQ); it
	// ends at the shutdown deadline.
	final context.Context
}

// Run consumes until ctx ends, then drains within Config.ShutdownTimeout:
// sends in flight finish and are deleted, messages received but not started
// are made visible again at once, messages held after a failed attempt are
// re-queued with their accounting. It returns an error only when the
// deadline cut sends short.
func (c *Consumer) Run(ctx context.Context) error {
	base := context.WithoutCancel(ctx)
	sends, cancelSends := context.WithCancel(base)
	defer cancelSends()
	final, cancelFinal := context.WithCancel(base)
	defer cancelFinal()
	lt := lifetimes{stop: ctx, sends: sends, final: final}

	finished := make(chan struct{})
	var background sync.WaitGroup
	defer background.Wait()
	defer close(finished)
	background.Go(func() {
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
	})
	if c.metrics != nil {
		background.Go(func() { c.reportPaused(finished) })
	}

	var err error
	if c.deletes, err = newEntryBatcher(c.cfg.DeleteBatch, c.cfg.BatchLinger, func(b []entry) { c.flushDeletes(final, b) }); err != nil {
		return err
	}
	if c.releases, err = newEntryBatcher(contract.SQSMaxBatch, c.cfg.BatchLinger, func(b []entry) { c.flushReleases(final, b) }); err != nil {
		c.deletes.Close()
		return err
	}
	c.log.Info("consumer started", "queue", c.cfg.QueueURL, "pollers", c.cfg.Pollers, "workers", c.cfg.Workers,
		"retryWindow", c.cfg.RetryWindow.String())

	var pollers, workers sync.WaitGroup
	for range c.cfg.Pollers {
		pollers.Go(func() { c.poll(lt, &workers) })
	}
	pollers.Wait()
	c.log.Info("stopped receiving; draining")
	workers.Wait()
	c.releases.Close()
	c.deletes.Close()
	if n := c.abandoned.Load(); n > 0 {
		return fmt.Errorf("shutdown deadline %s cut %d sends short; their messages return after the visibility timeout", c.cfg.ShutdownTimeout, n)
	}
	c.log.Info("drained")
	return nil
}

// reportPaused adds the time sending was paused to the PausedTime metric
// every second, and once more when Run ends.
func (c *Consumer) reportPaused(finished <-chan struct{}) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-finished:
			if d := c.breaker.takePaused(); d > 0 {
				c.metrics.Observe(contract.PausedTime, d)
			}
			return
		}
		if d := c.breaker.takePaused(); d > 0 {
			c.metrics.Observe(contract.PausedTime, d)
		}
	}
}

// poll is one long-poll loop: it holds worker slots before receiving so that
// every message received is started at once. While the breaker is open it
// receives nothing, except one message to probe with when no worker holds
// one.
func (c *Consumer) poll(lt lifetimes, workers *sync.WaitGroup) {
	// Ask in tens: fewer, fuller receives cost less (SQS bills per request).
	// A poller waits until ten workers are free (all of them, when there are
	// fewer) and other pollers keep the rest busy meanwhile.
	failures := 0
	for lt.stop.Err() == nil {
		limit, err := c.breaker.pollLimit(lt.stop, c.markProgress)
		if err != nil {
			return
		}
		least, most := min(c.cfg.ReceiveBatch, c.cfg.Workers), c.cfg.ReceiveBatch
		if limit > 0 {
			least, most = limit, limit
		}
		n, err := c.slots.acquire(lt.stop, least, most)
		if err != nil {
			return
		}
		if limit < 0 && c.breaker.isOpen() {
			// Opened while this poller waited for workers.
			c.slots.release(n)
			continue
		}
		out, err := c.sqs.ReceiveMessage(lt.stop, &sqs.ReceiveMessageInput{
			QueueUrl:            aws.String(c.cfg.QueueURL),
			MaxNumberOfMessages: int32(n),
			WaitTimeSeconds:     int32(c.cfg.WaitTime / time.Second),
			VisibilityTimeout:   VisibilitySeconds(c.cfg.Visibility),
			MessageSystemAttributeNames: []types.MessageSystemAttributeName{
				types.MessageSystemAttributeNameSentTimestamp,
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
	sentAt   time.Time
	received time.Time
	retry    retryState
	// triedHere: a send of it failed in this process, so at shutdown it is
	// re-queued with its accounting rather than released.
	triedHere bool
	// failure is the last failed send's, in this process.
	failure transport.Failure
	// scope is the envelope's in the state store; lease is held from the
	// claim before the first send (dedup.go).
	scope string
	lease *store.NotificationLease
}

func (m *message) entry() entry { return entry{messageID: m.id, receipt: m.receipt} }

// fate is how the handling of a message ends.
type fate int

const (
	fateSent        fate = iota // accepted by the provider: delete
	fateDeadLetter              // permanent, or its window ran out
	fateRequeue                 // a copy with its accounting, after a delay
	fateRelease                 // not started, at shutdown: visible again at once
	fateAbandoned               // the send was cut short by the shutdown deadline
	fateAlreadySent             // the store has it sent: delete unsent
	fateBusy                    // another sender holds its lease: leave it until then
)

// outcome is the fate of a message and what acting on it needs.
type outcome struct {
	fate       fate
	failure    transport.Failure // fateDeadLetter
	delay      time.Duration     // fateRequeue, fateBusy
	why        string            // fateRequeue: for the log
	providerID string            // fateSent, fateAlreadySent
	latency    time.Duration     // fateSent
}

// handle takes one message to its end: sent and deleted, re-queued for a
// later attempt, dead-lettered, or released at shutdown.
func (c *Consumer) handle(lt lifetimes, raw types.Message, received time.Time) {
	m := &message{
		Message:  raw,
		id:       aws.ToString(raw.MessageId),
		receipt:  aws.ToString(raw.ReceiptHandle),
		received: received,
	}
	if ms := attrInt(raw.Attributes, string(types.MessageSystemAttributeNameSentTimestamp)); ms > 0 {
		m.sentAt = time.UnixMilli(int64(ms))
	}
	log := c.log.With("sqsMessageId", m.id)
	state, err := readRetryState(raw.MessageAttributes)
	if err != nil {
		log.Warn("retry accounting unreadable; counting afresh", "err", err)
	}
	m.retry = state
	if m.retry.attempts > 0 {
		log = log.With("attempts", m.retry.attempts)
	}

	env, err := herald.DecodeEnvelope([]byte(aws.ToString(raw.Body)))
	if err != nil {
		c.deadLetter(lt.final, m, transport.Failure{Class: transport.Unreadable, Reason: transport.Sanitize(err.Error())}, log)
		return
	}
	log = log.With("envelopeId", env.ID, "from", mailaddr.Mask(env.From), "recipients", env.Recipients())
	if !c.cfg.AllowedFrom.Allows(env.From) {
		// Only the API's allow-list may decide who Herald sends as: a
		// message put on the queue around it is refused here too.
		c.deadLetter(lt.final, m, senderNotAllowed(env.From), log)
		return
	}
	if c.store != nil {
		scope, bad := storeScope(&env)
		if bad != nil {
			c.deadLetter(lt.final, m, *bad, log)
			return
		}
		m.scope = scope
	}

	stopHeartbeat := c.heartbeat(lt.final, m, log)
	out := c.attempt(lt, m, &env, log)
	out = c.record(lt, m, out, log)
	stopHeartbeat()

	switch out.fate {
	case fateSent:
		c.sent(m, out, log)
	case fateDeadLetter:
		c.deadLetter(lt.final, m, out.failure, log)
	case fateRequeue:
		c.requeue(lt.final, m, out.delay, out.why, log)
	case fateRelease:
		c.release(m, log)
	case fateAlreadySent:
		c.alreadySent(m, out, log)
	case fateBusy:
		c.busy(lt.final, m, out.delay, log)
	case fateAbandoned:
		// Whether the provider took it is unknown, so the message is left to
		// come back after the visibility timeout (at-least-once).
		c.abandoned.Add(1)
		log.Warn("send cut short by the shutdown deadline", "outcome", "abandoned", "latencyMs", out.latency.Milliseconds())
	}
}

// attempt sends the message until it is sent or its fate is otherwise
// decided. A throttled send, and any transient failure while sending is
// paused, is tried again here, the message held and kept invisible; other
// transient failures go back to the queue as a copy after a backoff.
func (c *Consumer) attempt(lt lifetimes, m *message, env *herald.Envelope, log *slog.Logger) outcome {
	for {
		probe, err := c.admit(lt, m)
		if err != nil {
			return c.stopWaiting(lt, m)
		}
		if lt.stop.Err() != nil {
			if probe {
				c.breaker.abandonProbe()
			}
			return c.stopWaiting(lt, m)
		}
		if c.store != nil && m.lease == nil {
			switch decided, out := c.claim(lt, m, env, probe, log); decided {
			case claimSettled:
				return out
			case claimHold:
				continue
			}
		}

		start := time.Now()
		sendCtx, cancel := context.WithTimeout(lt.sends, c.cfg.SendTimeout)
		providerID, err := c.sender.Send(sendCtx, env)
		cancel()
		latency := time.Since(start)
		if err == nil {
			if c.limiter != nil && !probe {
				c.limiter.Succeeded(start)
			}
			c.breaker.record(true, false, probe, "")
			return outcome{fate: fateSent, providerID: providerID, latency: latency}
		}
		if lt.sends.Err() != nil {
			if probe {
				c.breaker.abandonProbe()
			}
			return outcome{fate: fateAbandoned, latency: latency}
		}

		f := c.classify(err)
		flog := log.With("class", string(f.Class), "reason", f.Reason, "latencyMs", latency.Milliseconds())
		if !f.Class.Retry() {
			// The provider answered: it is up, whatever it thinks of this message.
			c.breaker.record(true, false, probe, "")
			c.metrics.CountBy(contract.Failed, string(f.Class), 1)
			return outcome{fate: fateDeadLetter, failure: f}
		}
		throttled := f.Class == transport.Throttled && c.limiter != nil
		if throttled {
			// A throttle is the pacing's signal, not a failure of the message.
			c.metrics.Count(contract.Throttled, 1)
			if !probe {
				c.limiter.Throttled(start)
			}
		} else {
			c.metrics.CountBy(contract.Failed, string(f.Class), 1)
		}
		c.breaker.record(false, f.Class == transport.Account, probe, f.Reason)
		m.retry.failed(start, f)
		m.triedHere, m.failure = true, f
		flog = flog.With("attempts", m.retry.attempts)
		if m.retry.expired(time.Now(), c.cfg.RetryWindow) {
			return outcome{fate: fateDeadLetter, failure: m.retry.expiredFailure(c.cfg.RetryWindow)}
		}
		if throttled || c.breaker.isOpen() {
			flog.Debug("send failed; trying again in this process", "outcome", "held")
			continue
		}
		delay := Backoff(m.retry.attempts, c.cfg.RetryBase, c.cfg.RetryMax, c.rnd)
		return outcome{fate: fateRequeue, delay: delay, why: "transient failure"}
	}
}

// admit waits until the message may be sent: the breaker lets it (at once
// while closed, or as the probe) and then the limiter does (probes skip it:
// the breaker spaces them). The wait ends early at shutdown, and when the
// worker has held the message for RetryMax or the message's window runs
// out.
func (c *Consumer) admit(lt lifetimes, m *message) (probe bool, err error) {
	holdUntil := m.received.Add(c.cfg.RetryMax)
	if end := m.retry.windowEnd(c.cfg.RetryWindow); end.After(time.Now()) && end.Before(holdUntil) {
		holdUntil = end
	}
	ctx, cancel := context.WithDeadline(lt.stop, holdUntil)
	defer cancel()
	probe, err = c.breaker.admit(ctx)
	if err != nil || probe || c.limiter == nil {
		return probe, err
	}
	return false, c.limiter.Wait(ctx)
}

// stopWaiting decides the fate of a message whose wait to be sent ended
// without a send.
func (c *Consumer) stopWaiting(lt lifetimes, m *message) outcome {
	switch {
	case lt.stop.Err() != nil && m.triedHere:
		// Shutdown: what failed here goes back with its accounting.
		return outcome{fate: fateRequeue, delay: Backoff(m.retry.attempts, c.cfg.RetryBase, c.cfg.RetryMax, c.rnd), why: "shutdown"}
	case lt.stop.Err() != nil:
		return outcome{fate: fateRelease}
	case m.retry.expired(time.Now(), c.cfg.RetryWindow):
		return outcome{fate: fateDeadLetter, failure: m.retry.expiredFailure(c.cfg.RetryWindow)}
	default:
		// Held for RetryMax: the queue keeps it better than a worker does
		// (SQS extends a message's visibility to 12 hours at most).
		return outcome{fate: fateRequeue, delay: Backoff(m.retry.attempts, c.cfg.RetryBase, c.cfg.RetryMax, c.rnd), why: "held too long"}
	}
}

// senderNotAllowed is the dead-letter reason of a message whose sender is
// not on the allow-list: permanent, naming the rule.
func senderNotAllowed(from string) transport.Failure {
	// Masked, not Sanitized: the masked address keeps its domain, which
	// tells the operator which rule refused it.
	return transport.Failure{Class: transport.Permanent, Reason: fmt.Sprintf(
		"sender %s is not allowed: not on the allowed senders (%s)", mailaddr.Mask(from), contract.AllowedFrom.Name)}
}

// sent deletes a message the provider accepted and records it.
func (c *Consumer) sent(m *message, out outcome, log *slog.Logger) {
	accepted := time.Now()
	settle(c.deletes, m.entry(), log)
	c.metrics.Count(contract.Sent, 1)
	c.metrics.Observe(contract.SendLatency, out.latency)
	attrs := []any{"outcome", "sent", "latencyMs", out.latency.Milliseconds(), "providerId", out.providerID}
	if !m.sentAt.IsZero() {
		// From when SQS took the message (the API's enqueue, or a retry's
		// re-queue) to the provider's accept: the queue wait included.
		processing := accepted.Sub(m.sentAt)
		c.metrics.Observe(contract.ProcessingTime, processing)
		attrs = append(attrs, "processingMs", processing.Milliseconds())
	}
	log.Info("message sent", attrs...)
}

// requeue sends a copy of the message, with its accounting, to the queue
// with the delay as DelaySeconds, then deletes the original. Copy first,
// then delete: a failure between the two leaves two messages, never none.
// When the copy cannot be sent, the original stays and becomes visible
// after the delay (its receive count then grows, its accounting does not).
func (c *Consumer) requeue(ctx context.Context, m *message, delay time.Duration, why string, log *slog.Logger) {
	secs := min(VisibilitySeconds(delay), int32(contract.SQSMaxDelay/time.Second))
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c.metrics.Count(contract.Retried, 1)
	out, err := c.sqs.SendMessage(ctx, &sqs.SendMessageInput{
		QueueUrl:          aws.String(c.cfg.QueueURL),
		MessageBody:       m.Body,
		DelaySeconds:      secs,
		MessageAttributes: copyAttributes(m),
	})
	// One line per re-queue, with the last failure's class and reason (none
	// for a message released at shutdown or after a pause without one).
	log = log.With("outcome", "retry", "why", why, "attempts", m.retry.attempts, "retryInSeconds", secs)
	if m.failure.Class != "" {
		log = log.With("class", string(m.failure.Class), "reason", m.failure.Reason)
	}
	if err == nil {
		settle(c.deletes, m.entry(), log)
		if m.failure.Class == "" {
			log.Info("message re-queued unsent", "copyMessageId", aws.ToString(out.MessageId))
		} else {
			log.Warn("send failed; re-queued for a later attempt", "copyMessageId", aws.ToString(out.MessageId))
		}
		return
	}
	_, verr := c.sqs.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{
		QueueUrl:          aws.String(c.cfg.QueueURL),
		ReceiptHandle:     aws.String(m.receipt),
		VisibilityTimeout: secs,
	})
	if verr != nil {
		log.Warn("send failed; could not re-queue the message nor set its backoff, it returns after the visibility timeout",
			"outcome", "kept", "err", errors.Join(err, verr))
		return
	}
	log.Warn("send failed; could not re-queue a copy, the message returns after its backoff", "err", err)
}

// deadLetter moves the message to the DLQ with the reason attached, then
// deletes it. When the DLQ send fails the message stays: it comes back after
// the visibility timeout and is tried again.
func (c *Consumer) deadLetter(ctx context.Context, m *message, f transport.Failure, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err := c.sqs.SendMessage(ctx, &sqs.SendMessageInput{
		QueueUrl:          aws.String(c.cfg.DeadLetterURL),
		MessageBody:       m.Body,
		MessageAttributes: deadLetterAttributes(m, f),
	})
	log = log.With("class", string(f.Class), "reason", f.Reason)
	if err != nil {
		log.Error("dead-letter queue send failed; message left on the queue", "outcome", "kept", "err", err)
		return
	}
	settle(c.deletes, m.entry(), log)
	c.metrics.Count(contract.DeadLettered, 1)
	log.Warn("message dead-lettered", "outcome", "dead-lettered")
}

// release hands a message received but not started back to the queue at
// once (visibility 0), batched with others released at the same time.
func (c *Consumer) release(m *message, log *slog.Logger) {
	settle(c.releases, m.entry(), log)
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
				// Try again soon: the next beat would come as the visibility
				// lapses, and another consumer would send the message too.
				log.Warn("visibility heartbeat failed; trying again", "err", err)
				t.Reset(min(every/4, 2*time.Second))
				continue
			}
			log.Debug("visibility extended", "seconds", VisibilitySeconds(c.cfg.Visibility))
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
		c.log.Warn("release failed; these messages return after the visibility timeout", "count", len(batch), "err", err)
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
