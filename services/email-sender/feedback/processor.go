package feedback

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"herald/services/internal/herald"
	"herald/services/internal/store"
)

// Store is the part of the state store the processor uses; *store.Store
// implements it.
type Store interface {
	RecordFeedback(ctx context.Context, id string, fb store.Feedback) (store.FeedbackResult, error)
}

// Processor applies SES events to the notifications' status.
type Processor struct {
	store    Store
	topicARN string
	log      *slog.Logger
	metrics  *herald.Metrics
}

// ProcessorConfig is what a Processor needs.
type ProcessorConfig struct {
	// TopicARN is the SNS topic of Herald's configuration set; a message
	// from another topic is refused. "" accepts any topic (the queue policy
	// already admits only this one).
	TopicARN string
	// Logger is required; Metrics may be nil (off).
	Logger  *slog.Logger
	Metrics *herald.Metrics
}

// NewProcessor makes a processor over st.
func NewProcessor(st Store, cfg ProcessorConfig) (*Processor, error) {
	if st == nil || cfg.Logger == nil {
		return nil, errors.New("feedback: a store and a logger are required")
	}
	return &Processor{store: st, topicARN: cfg.TopicARN, log: cfg.Logger, metrics: cfg.Metrics}, nil
}

// Result is what one event did.
type Result struct {
	Event  Event
	Update store.FeedbackResult
}

// Process applies one message of the feedback queue. Its errors are
// *Malformed (permanent: the message goes to the DLQ, with the reason) or
// anything else (transient: the store failed; the message stays on the
// queue and comes back).
func (p *Processor) Process(ctx context.Context, body []byte) (Result, error) {
	ev, err := Parse(body, p.topicARN)
	if err != nil {
		return Result{}, err
	}
	res, err := p.store.RecordFeedback(ctx, ev.NotificationID, ev.Feedback)
	switch {
	case errors.Is(err, store.ErrNotFound):
		// Every send is claimed, and so recorded, before SES sees it: no
		// record means the id is not one Herald sent, or its record expired.
		return Result{Event: ev}, malformed(KindUnknown, "%s event of SES message %s: no record of notification %s (not Herald's, or expired)",
			ev.Type, ev.Feedback.ProviderMessageID, ev.NotificationID)
	case errors.Is(err, store.ErrInvalidFeedback):
		return Result{Event: ev}, malformed(KindBadValue, "%s event of SES message %s: %v", ev.Type, ev.Feedback.ProviderMessageID, err)
	case err != nil:
		return Result{Event: ev}, fmt.Errorf("feedback: %s event of notification %s: %w", ev.Type, ev.NotificationID, err)
	}
	p.count(ev, res)
	p.log.Info("feedback applied", "eventType", ev.Type, "notificationId", ev.NotificationID,
		"sesMessageId", ev.Feedback.ProviderMessageID, "recipients", len(ev.Feedback.Recipients),
		"raised", len(res.Raised), "otherSend", res.OtherSend, "writes", res.Writes)
	if res.OtherSend && ev.Type == EventSend {
		p.log.Warn("notification sent more than once", "notificationId", ev.NotificationID,
			"sesMessageId", ev.Feedback.ProviderMessageID, "recordedMessageId", res.RecordedMessageID)
	}
	return Result{Event: ev, Update: res}, nil
}

// count adds the event and the outcomes it raised to the metrics.
func (p *Processor) count(ev Event, res store.FeedbackResult) {
	p.metrics.CountBy(MetricEvents, ev.Type, 1)
	if res.OtherSend && ev.Type == EventSend {
		p.metrics.Count(MetricDuplicateSends, 1)
	}
	for _, r := range res.Raised {
		switch r.Outcome {
		case store.OutcomeDelivered:
			p.metrics.Count(MetricDelivered, 1)
		case store.OutcomeBounced:
			p.metrics.CountBy(MetricBounced, r.Type, 1)
		case store.OutcomeComplained:
			p.metrics.Count(MetricComplained, 1)
		case store.OutcomeRejected:
			p.metrics.Count(MetricRejected, 1)
		case store.OutcomeDelayed:
			p.metrics.Count(MetricDelayed, 1)
		}
	}
}
