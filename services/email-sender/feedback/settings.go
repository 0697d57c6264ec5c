package feedback

// EventTypes are the SES event types Herald's configuration set publishes
// (the event destination's MatchingEventTypes), as the SES v2 API names
// them. The processor reads each of them; OPEN, CLICK and SUBSCRIPTION are
// not published, and arrive as unknown types if they are.
var EventTypes = []string{"SEND", "REJECT", "BOUNCE", "COMPLAINT", "DELIVERY", "DELIVERY_DELAY", "RENDERING_FAILURE"}

// Metric names (services/README.md): the outcomes count recipients whose
// outcome an event raised (a repeated event counts once).
const (
	MetricDelivered  = "Delivered"
	MetricBounced    = "Bounced" // by BounceType: Permanent, Transient, Undetermined
	MetricComplained = "Complained"
	MetricRejected   = "SESRejected" // the API counts its own refusals as Rejected
	MetricDelayed    = "Delayed"
	// MetricEvents counts the events processed, by EventType.
	MetricEvents = "FeedbackEvents"
	// MetricDuplicateSends counts Send events of a notification already
	// recorded with another SES message: mail sent twice (the window of
	// services/internal/store/DESIGN.md), measured.
	MetricDuplicateSends = "DuplicateSends"
	// MetricDeadLettered counts events moved to the feedback DLQ, by Reason.
	MetricDeadLettered = "FeedbackDeadLettered"
	// MetricRetried counts events left on the queue after a transient failure.
	MetricRetried = "FeedbackRetried"
)
