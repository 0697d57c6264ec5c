package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"herald/services/contract"
	"herald/services/email-sender/transport"
	"herald/services/internal/herald"
	"herald/services/internal/store"
)

// Deduplication by notification id (issue 11; the state store's DESIGN.md,
// "Sender"): a worker claims the notification in the store right before its
// first send, records the outcome after, and skips what is already sent. A
// redelivered message (a crash, a slow delete, SQS's own at-least-once) is
// then deleted unsent. The one duplicate left is a crash between the
// provider's accept and MarkSent.

// Store is the part of the state store the consumer uses; *store.Store
// implements it.
type Store interface {
	Claim(ctx context.Context, id, scope string, lease time.Duration) (store.Claim, error)
	MarkSent(ctx context.Context, l store.NotificationLease, providerMessageID string, at time.Time) (store.MarkSentResult, error)
	MarkFailed(ctx context.Context, l store.NotificationLease, class, reason string, at time.Time) error
	MarkDeadLettered(ctx context.Context, l store.NotificationLease, class, reason string, at time.Time) error
}

// UnkeyedScope is the store scope of an envelope without a keyId (one put
// on the queue around the API, or queued before the API wrote keyId): its
// record belongs to no API key's GET.
const UnkeyedScope = "-"

// storeCallTimeout bounds one store call; the SDK's own retries run inside it.
const storeCallTimeout = 5 * time.Second

// storeScope is the envelope's scope in the store, or a permanent failure
// when the envelope cannot be deduplicated: its id or key id is not as the
// API writes them.
func storeScope(env *herald.Envelope) (string, *transport.Failure) {
	scope := env.KeyID
	if scope == "" {
		scope = UnkeyedScope
	}
	if err := herald.CheckKeyID(scope); err != nil {
		return "", &transport.Failure{Class: transport.Permanent, Reason: transport.Sanitize("keyId: " + err.Error())}
	}
	if !store.ValidID(env.ID) {
		return "", &transport.Failure{Class: transport.Permanent, Reason: transport.Sanitize(fmt.Sprintf(
			"notification id %q is not a lowercase UUIDv7 or v8 as the API writes it: it cannot be deduplicated", env.ID))}
	}
	return scope, nil
}

// leaseTime is how long a claim holds a notification: it ends before SQS
// can deliver the message again after a crash, so the redelivery's claim
// takes over at once instead of finding the dead sender's lease (Busy) and
// putting the message back, one receive more towards maxReceiveCount. The
// heartbeat renews the visibility every half timeout, so the message stays
// hidden at least half a visibility timeout past any moment; the lease is a
// second shorter. A send (SendTimeout, well inside) fits in it; a message
// held longer (throttled, paused) keeps its claim, and only a duplicate
// delivery of SQS's own could then take it over (MarkSent reports that).
func (c *Consumer) leaseTime() time.Duration {
	return max(c.cfg.Visibility/2-time.Second, time.Second)
}

// claimed is what a claim decided.
type claimed int

const (
	claimSend    claimed = iota // the lease is held: send
	claimSettled                // the outcome is decided without a send
	claimHold                   // the store failed: hold the message and wait
)

// claim takes the notification's lease before its first send. The store's
// answers settle the message (already sent: delete; another sender holds
// it: leave it until its lease ends; another key's id: dead-letter); a
// store failure pauses sending through the breaker, as an SES outage does:
// the worker holds the message (its heartbeat keeps it invisible, its
// receive count does not grow) and a probe claims again later. Nothing is
// sent unclaimed and nothing is dead-lettered for the store's sake.
func (c *Consumer) claim(lt lifetimes, m *message, env *herald.Envelope, probe bool, log *slog.Logger) (claimed, outcome) {
	ctx, cancel := context.WithTimeout(lt.final, storeCallTimeout)
	cl, err := c.store.Claim(ctx, env.ID, m.scope, c.leaseTime())
	cancel()
	if err != nil && !errors.Is(err, store.ErrOwnerMismatch) {
		c.metrics.Count(contract.StoreErrors, 1)
		reason := transport.Sanitize("state store: " + err.Error())
		if !c.storeDown.Swap(true) {
			if store.Unavailable(err) {
				log.Warn("state store unavailable; sending paused until a claim goes through", "err", err)
			} else {
				log.Error("state store refused the claim (a misconfiguration?); sending paused until a claim goes through", "err", err)
			}
		}
		c.breaker.record(false, true, probe, reason)
		return claimHold, outcome{}
	}
	if c.storeDown.Swap(false) {
		log.Info("state store answers again")
		if probe && cl.Outcome != store.Claimed {
			// The probe found the store back; a send's outcome would
			// otherwise close the breaker.
			c.breaker.record(true, false, true, "")
			probe = false
		}
	}
	if probe && (err != nil || cl.Outcome != store.Claimed) {
		c.breaker.abandonProbe()
	}
	switch {
	case err != nil: // ErrOwnerMismatch
		return claimSettled, outcome{fate: fateDeadLetter, failure: transport.Failure{Class: transport.Permanent,
			Reason: "the notification id belongs to another API key: not what the API queued"}}
	case cl.Outcome == store.AlreadySent:
		return claimSettled, outcome{fate: fateAlreadySent, providerID: cl.Sent.ProviderMessageID}
	case cl.Outcome == store.Busy:
		return claimSettled, outcome{fate: fateBusy, delay: time.Until(cl.LeaseUntil)}
	}
	m.lease = &cl.Lease
	if cl.TookOver {
		// The last attempt's outcome was never recorded: it may have sent,
		// and this send is then the duplicate the store cannot prevent.
		c.metrics.Count(contract.ClaimTakeovers, 1)
		log.Info("claim took over an attempt whose outcome was not recorded", "attempt", cl.Attempt)
	}
	return claimSend, outcome{}
}

// record writes the message's outcome to the store while its heartbeat
// still runs, and returns the fate to act on: a failure mark that finds the
// notification sent (by another sender meanwhile) deletes the message
// instead.
func (c *Consumer) record(lt lifetimes, m *message, out outcome, log *slog.Logger) outcome {
	if m.lease == nil {
		return out
	}
	switch out.fate {
	case fateSent:
		c.markSent(lt, m, out, log)
	case fateDeadLetter, fateRequeue:
		mark, state := c.store.MarkFailed, "failed"
		class, reason := m.failure.Class, m.failure.Reason
		if out.fate == fateDeadLetter {
			mark, state = c.store.MarkDeadLettered, "dead-lettered"
			class, reason = out.failure.Class, out.failure.Reason
		}
		if class == "" {
			class, reason = "shutdown", "re-queued unsent at shutdown"
		}
		ctx, cancel := context.WithTimeout(lt.final, storeCallTimeout)
		err := mark(ctx, *m.lease, string(class), nonEmpty(reason, "unknown"), time.Now())
		cancel()
		switch {
		case errors.Is(err, store.ErrAlreadySent):
			log.Info("notification sent by another sender meanwhile; deleting this message", "outcome", "already-sent")
			return outcome{fate: fateAlreadySent}
		case errors.Is(err, store.ErrLeaseLost):
			log.Warn("another sender took the notification over; its outcome is not recorded here", "state", state)
		case err != nil:
			c.metrics.Count(contract.StoreErrors, 1)
			log.Warn("could not record the outcome in the state store; the lease ends by itself", "state", state, "err", err)
		}
	}
	return out
}

// markSent records the provider's accept. The mail is gone: the store is
// tried again for up to half the visibility timeout (the heartbeat keeps
// the message hidden meanwhile), then the message is deleted anyway and the
// miss counted, since a redelivery would send it again. SES's Send event
// (the feedback consumer) can fill the record in later.
func (c *Consumer) markSent(lt lifetimes, m *message, out outcome, log *slog.Logger) {
	at := time.Now()
	deadline := at.Add(c.cfg.Visibility / 2)
	for try := 1; ; try++ {
		ctx, cancel := context.WithTimeout(lt.final, min(storeCallTimeout, max(time.Until(deadline), time.Millisecond)))
		res, err := c.store.MarkSent(ctx, *m.lease, out.providerID, at)
		cancel()
		if err == nil {
			if res.Duplicate {
				c.metrics.Count(contract.DuplicateRecorded, 1)
				log.Warn("notification sent twice", "providerId", out.providerID, "firstProviderId", res.First.ProviderMessageID)
			}
			return
		}
		if errors.Is(err, store.ErrOwnerMismatch) {
			log.Error("could not record the send: the notification id belongs to another API key", "err", err)
			return
		}
		c.metrics.Count(contract.StoreErrors, 1)
		wait := BackoffCeiling(try, 100*time.Millisecond, 2*time.Second)
		if time.Now().Add(wait).After(deadline) || lt.final.Err() != nil {
			c.metrics.Count(contract.StatusNotRecorded, 1)
			log.Error("sent, but the state store did not record it; a redelivery would send it again",
				"providerId", out.providerID, "tries", try, "err", err)
			return
		}
		if !sleep(lt.final, wait) {
			return
		}
	}
}

// alreadySent deletes a message whose notification was sent before.
func (c *Consumer) alreadySent(m *message, out outcome, log *slog.Logger) {
	settle(c.deletes, m.entry(), log)
	c.metrics.Count(contract.AlreadySent, 1)
	log.Info("notification already sent; message deleted unsent", "outcome", "already-sent", "providerId", out.providerID)
}

// busy leaves a message another sender holds on the queue until that
// sender's lease ends.
func (c *Consumer) busy(ctx context.Context, m *message, wait time.Duration, log *slog.Logger) {
	secs := max(VisibilitySeconds(wait), 1)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err := c.sqs.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{
		QueueUrl:          aws.String(c.cfg.QueueURL),
		ReceiptHandle:     aws.String(m.receipt),
		VisibilityTimeout: secs,
	})
	if err != nil {
		log.Warn("another sender holds the notification; the message returns after the visibility timeout", "outcome", "busy", "err", err)
		return
	}
	log.Info("another sender holds the notification; the message returns when its lease ends", "outcome", "busy", "retryInSeconds", secs)
}

// Paused reports whether sending is paused, and the last failure's reason
// (the provider's or the state store's), for the health check.
func (c *Consumer) Paused() (bool, string) { return c.breaker.state() }
