package stacks

import (
	"time"

	"herald/services/contract"
)

// The sender retries a transiently failing message by re-queueing a copy
// that carries its retry budget, for up to the retry window after its first
// attempt (services/README.md, "Retries, pauses and the send rate"). The
// queue's settings have to agree with that design; validateRetry checks
// they do, at synth.

const (
	// minRetryWindow: HERALD_RETRY_WINDOW's default (contract) is long
	// enough to ride out a regional SES incident; under a minute, a
	// message has no real second chance.
	minRetryWindow = time.Minute
	// retryRetentionMargin is how much longer than the retry window the
	// queue keeps a message: a day for the oldest-message alarm to be seen
	// and a stopped sender fleet to be brought back before SQS deletes
	// anything it holds. (A re-queued copy starts a new retention period;
	// a message nobody receives does not.)
	retryRetentionMargin = 24 * time.Hour
	// minMaxReceiveCount: receives are counted for more than crashes. A task
	// that stops hands back what it had not started (deploys, scale-in),
	// and each of those is a receive; below 3, ordinary operations could
	// dead-letter a healthy message.
	minMaxReceiveCount = 3
	// minSenderVisibility leaves the heartbeat, which renews a held
	// message's visibility every half of it, a few seconds to retry a failed
	// renewal before the message reappears.
	minSenderVisibility = 10 * time.Second
)

// validateRetry checks the queue against the retry design.
func (e Environment) validateRetry(p *problems) {
	q := e.Queue
	if err := contract.RetryWindow.Check(q.RetryWindow); err != nil {
		p.addErr("Queue.RetryWindow", err)
	} else if q.RetryWindow < minRetryWindow || q.RetryWindow%time.Second != 0 {
		p.add("Queue.RetryWindow", "%s is under %s or not whole seconds", q.RetryWindow, minRetryWindow)
	}
	if q.Retention < q.RetryWindow+retryRetentionMargin {
		p.add("Queue.Retention", "%s must be at least Queue.RetryWindow %s + %s, or SQS could delete a message the sender still means to retry",
			q.Retention, q.RetryWindow, retryRetentionMargin)
	}
	if q.MaxReceiveCount < minMaxReceiveCount {
		p.add("Queue.MaxReceiveCount", "%d is under %d: releases at shutdown count as receives too, so ordinary deploys could dead-letter a message", q.MaxReceiveCount, minMaxReceiveCount)
	}
	visibility := e.Email.VisibilityTimeout()
	if visibility < minSenderVisibility {
		p.add("Email.SendTimeout", "gives a visibility timeout of %s, under %s: the heartbeat at half of it has no time to retry", visibility, minSenderVisibility)
	}
	// A message that crashes the sender every time comes back once per
	// visibility timeout, and reaches the DLQ after MaxReceiveCount of them:
	// well inside the retention, or SQS deletes it first.
	if crashLoop := time.Duration(q.MaxReceiveCount) * visibility; crashLoop > q.Retention/2 {
		p.add("Queue.MaxReceiveCount", "%d receives x the visibility timeout %s = %s, over half the retention %s: a message that crashes the sender could expire before it is dead-lettered",
			q.MaxReceiveCount, visibility, crashLoop, q.Retention)
	}
}
