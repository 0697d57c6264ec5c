package contract

// Metrics are CloudWatch Embedded Metric Format lines on each service's
// stdout, in one namespace, every one with the dimensions Environment and
// Service; a breakdown metric also has a second dimension set with its By
// dimension. The stacks' dashboard and alarms read them by these names.
const (
	// Namespace is the CloudWatch namespace of every Herald metric.
	Namespace = "Herald"
	// DimEnvironment holds HERALD_ENV, DimService the service's name.
	DimEnvironment = "Environment"
	DimService     = "Service"
	// DimReason breaks Rejected, RateFallback and FeedbackDeadLettered
	// down, DimClass Failed, DimEventType FeedbackEvents, DimBounceType
	// Bounced.
	DimReason     = "Reason"
	DimClass      = "Class"
	DimEventType  = "EventType"
	DimBounceType = "BounceType"
)

// Unit is a metric's CloudWatch unit.
type Unit string

const (
	Count        Unit = "Count"
	Milliseconds Unit = "Milliseconds"
)

// Metric is one metric a service emits.
type Metric struct {
	Name    string
	Service Service
	Unit    Unit
	// By is the dimension of a breakdown ("" for none).
	By string
	// Meaning is what services/README.md says of it.
	Meaning string
}

// The notification API's metrics.
var (
	Accepted       = Metric{Name: "Accepted", Service: API, Unit: Count, Meaning: "notifications queued"}
	Rejected       = Metric{Name: "Rejected", Service: API, Unit: Count, By: DimReason, Meaning: "notifications refused, by reason"}
	EnqueueLatency = Metric{Name: "EnqueueLatency", Service: API, Unit: Milliseconds, Meaning: "time to put a notification on the queue"}
	RateLeases     = Metric{Name: "RateLeases", Service: API, Unit: Count,
		Meaning: "DynamoDB requests of the per-key rate limit (a conditional `UpdateItem` on the key's `r#` item each, a lost race included); over `Accepted`: its cost per notification"}
	RateFallback = Metric{Name: "RateFallback", Service: API, Unit: Count, By: DimReason,
		Meaning: "notifications the per-key rate limit decided by its local fallback (the limit divided by `HERALD_RATE_TASKS`) because the store failed, by reason (`unavailable`: throttled, down or slow; `error`: any other, e.g. access denied)"}
)

// The email sender's metrics.
var (
	Sent   = Metric{Name: "Sent", Service: Sender, Unit: Count, Meaning: "sends the provider accepted"}
	Failed = Metric{Name: "Failed", Service: Sender, Unit: Count, By: DimClass,
		Meaning: "sends that failed, by class (throttles excluded)"}
	Throttled      = Metric{Name: "Throttled", Service: Sender, Unit: Count, Meaning: "sends SES throttled; retried in the task"}
	Retried        = Metric{Name: "Retried", Service: Sender, Unit: Count, Meaning: "messages re-queued for a later attempt"}
	DeadLettered   = Metric{Name: "DeadLettered", Service: Sender, Unit: Count, Meaning: "messages the sender moved to the dead-letter queue"}
	SendLatency    = Metric{Name: "SendLatency", Service: Sender, Unit: Milliseconds, Meaning: "one send, to the provider's answer"}
	ProcessingTime = Metric{Name: "ProcessingTime", Service: Sender, Unit: Milliseconds,
		Meaning: "SQS `SentTimestamp` (when the API queued it) to the provider's accept"}
	PausedTime = Metric{Name: "PausedTime", Service: Sender, Unit: Milliseconds,
		Meaning: "how long sending was paused because SES or the state store failed (the Sum over a period is the paused milliseconds in it)"}
)

// The sender's deduplication by notification id (the state store): what
// its claims and records found.
var (
	AlreadySent = Metric{Name: "AlreadySent", Service: Sender, Unit: Count,
		Meaning: "messages deleted unsent: the store had their notification sent (a redelivery)"}
	ClaimTakeovers = Metric{Name: "ClaimTakeovers", Service: Sender, Unit: Count,
		Meaning: "claims of a notification whose last attempt's outcome was never recorded (its sender died): an upper bound of the duplicates the store cannot prevent"}
	DuplicateRecorded = Metric{Name: "DuplicateRecorded", Service: Sender, Unit: Count,
		Meaning: "sends recorded for a notification the store already had sent with another provider id"}
	StatusNotRecorded = Metric{Name: "StatusNotRecorded", Service: Sender, Unit: Count,
		Meaning: "sends the store could not record within half the visibility timeout (the message is deleted anyway)"}
	StoreErrors = Metric{Name: "StoreErrors", Service: Sender, Unit: Count,
		Meaning: "state store calls that failed (while claims fail, sending is paused)"}
)

// The sender's feedback processor's metrics (services/email-sender/feedback):
// the outcomes count recipients whose outcome an SES event raised (a
// repeated event counts once).
var (
	Delivered   = Metric{Name: "Delivered", Service: Sender, Unit: Count, Meaning: "recipients SES delivered to"}
	Bounced     = Metric{Name: "Bounced", Service: Sender, Unit: Count, By: DimBounceType, Meaning: "recipients that bounced, by bounce type (Permanent, Transient, Undetermined)"}
	Complained  = Metric{Name: "Complained", Service: Sender, Unit: Count, Meaning: "recipients that complained"}
	SESRejected = Metric{Name: "SESRejected", Service: Sender, Unit: Count,
		Meaning: "sends SES rejected after accepting them (the API counts its own refusals as `Rejected`)"}
	Delayed        = Metric{Name: "Delayed", Service: Sender, Unit: Count, Meaning: "recipients whose delivery SES reported delayed"}
	FeedbackEvents = Metric{Name: "FeedbackEvents", Service: Sender, Unit: Count, By: DimEventType, Meaning: "SES events processed, by event type"}
	DuplicateSends = Metric{Name: "DuplicateSends", Service: Sender, Unit: Count,
		Meaning: "Send events of a notification already recorded with another SES message: mail sent twice, measured"}
	FeedbackDeadLettered = Metric{Name: "FeedbackDeadLettered", Service: Sender, Unit: Count, By: DimReason, Meaning: "SES events moved to the feedback dead-letter queue, by reason"}
	FeedbackRetried      = Metric{Name: "FeedbackRetried", Service: Sender, Unit: Count, Meaning: "SES events left on the queue after a transient failure"}
)

// Metrics lists every metric, the API's first.
func Metrics() []Metric {
	return []Metric{Accepted, Rejected, EnqueueLatency, RateLeases, RateFallback, Sent, Failed, Throttled, Retried, DeadLettered, SendLatency, ProcessingTime, PausedTime,
		AlreadySent, ClaimTakeovers, DuplicateRecorded, StatusNotRecorded, StoreErrors,
		Delivered, Bounced, Complained, SESRejected, Delayed, FeedbackEvents, DuplicateSends, FeedbackDeadLettered, FeedbackRetried}
}
