package feedback

import "herald/services/contract"

// Metrics (services/contract; services/README.md): the outcomes count
// recipients whose outcome an event raised (a repeated event counts once).
var (
	MetricDelivered  = contract.Delivered
	MetricBounced    = contract.Bounced // by BounceType: Permanent, Transient, Undetermined
	MetricComplained = contract.Complained
	MetricRejected   = contract.SESRejected // the API counts its own refusals as Rejected
	MetricDelayed    = contract.Delayed
	// MetricEvents counts the events processed, by EventType.
	MetricEvents = contract.FeedbackEvents
	// MetricDuplicateSends counts Send events of a notification already
	// recorded with another SES message: mail sent twice (the window of
	// services/internal/store/DESIGN.md), measured.
	MetricDuplicateSends = contract.DuplicateSends
	// MetricDeadLettered counts events moved to the feedback DLQ, by Reason.
	MetricDeadLettered = contract.FeedbackDeadLettered
	// MetricRetried counts events left on the queue after a transient failure.
	MetricRetried = contract.FeedbackRetried
)
