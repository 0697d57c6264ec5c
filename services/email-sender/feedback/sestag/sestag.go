// Package sestag is the SES message tag that ties each send to its
// notification, for the transport that sets it, the feedback processor that
// reads it back from SES's events, and the local SES gate's tests. It
// imports nothing of Herald, so the transport can use it without a cycle
// (the feedback package imports the sender's consumer, which imports the
// transport); the wiring step moves it to the contract package.
package sestag

import (
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sesv2/types"
)

// NotificationTag is the SES message tag that carries the notification id
// on every send, so each SES event (whose mail.tags repeat the send's tags)
// finds its notification without a lookup.
const NotificationTag = "herald-id"

// WithNotificationTag returns tags with the notification id as
// NotificationTag, replacing any tag of that name: a caller's metadata must
// not name another notification, and the send carries the name once. The
// transport's one-line change (FEEDBACK.md):
//
//	EmailTags: sestag.WithNotificationTag(EmailTags(e.Metadata), e.ID),
func WithNotificationTag(tags []types.MessageTag, id string) []types.MessageTag {
	out := make([]types.MessageTag, 0, len(tags)+1)
	for _, t := range tags {
		if aws.ToString(t.Name) != NotificationTag {
			out = append(out, t)
		}
	}
	return append(out, types.MessageTag{Name: aws.String(NotificationTag), Value: aws.String(id)})
}
