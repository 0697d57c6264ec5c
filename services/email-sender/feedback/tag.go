package feedback

import (
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sesv2/types"
)

// NotificationTag is the SES message tag that carries the notification id
// on every send, so each SES event (whose mail.tags repeat the send's tags)
// finds its notification without a lookup. One name for the sender, the
// processor, the local SES gate's tests and the stacks; it moves to the
// contract package with the wiring.
const NotificationTag = "herald-id"

// WithNotificationTag returns tags with the notification id as
// NotificationTag, replacing any tag of that name: a caller's metadata must
// not name another notification (SES also refuses a send with a tag name
// twice). The transport's one-line change (FEEDBACK.md):
//
//	EmailTags: feedback.WithNotificationTag(EmailTags(e.Metadata), e.ID),
func WithNotificationTag(tags []types.MessageTag, id string) []types.MessageTag {
	out := make([]types.MessageTag, 0, len(tags)+1)
	for _, t := range tags {
		if aws.ToString(t.Name) != NotificationTag {
			out = append(out, t)
		}
	}
	return append(out, types.MessageTag{Name: aws.String(NotificationTag), Value: aws.String(id)})
}

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
