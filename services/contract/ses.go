package contract

// What the email sender and the stacks agree on about SES: the tag that
// ties each send to its notification, and the events the configuration set
// publishes.

// SESNotificationTag is the SES message tag that carries the notification
// id on every send, so each SES event (whose mail.tags repeat the send's
// tags) finds its notification without a lookup.
const SESNotificationTag = "herald-id"

// SESEventTypes are the SES event types Herald's configuration set
// publishes (the event destination's MatchingEventTypes), as the SES v2 API
// names them. The feedback consumer reads each of them; OPEN, CLICK and
// SUBSCRIPTION are not published, and arrive as unknown types if they are.
func SESEventTypes() []string {
	return []string{"SEND", "REJECT", "BOUNCE", "COMPLAINT", "DELIVERY", "DELIVERY_DELAY", "RENDERING_FAILURE"}
}
